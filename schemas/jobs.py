"""Job events: a job is requested on a queue's stream; its lifecycle goes to the queue's
events stream (created, progress, completed, failed, retried, dead-lettered)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.base import EventModel, register

PhoneNumber = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{7,15}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=1600)]
JobId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]


class PushNotification(EventModel):
    """The data of one push-notification job, as the seed writes it (``phoneNumber``)."""

    EVENT_TYPE = "push_notification"
    phone_number: PhoneNumber = Field(alias="phoneNumber")
    message: Text


@register
class JobRequested(EventModel):
    """A job to run: appended to the queue's stream, consumed by the queue's agent."""

    EVENT_TYPE = "job.requested"
    job_id: JobId
    queue: QueueName
    kind: Literal["push_notification"] = "push_notification"
    payload: PushNotification


@register
class JobCreated(EventModel):
    EVENT_TYPE = "job.created"
    job_id: JobId
    queue: QueueName


@register
class JobProgress(EventModel):
    EVENT_TYPE = "job.progress"
    job_id: JobId
    queue: QueueName
    percent: Annotated[int, Field(ge=0, le=100)]


@register
class JobCompleted(EventModel):
    EVENT_TYPE = "job.completed"
    job_id: JobId
    queue: QueueName
    attempt: Annotated[int, Field(ge=1)] = 1


@register
class JobRetried(EventModel):
    """A transient failure; the job runs again after ``delay_ms``."""

    EVENT_TYPE = "job.retried"
    job_id: JobId
    queue: QueueName
    attempt: Annotated[int, Field(ge=1)]
    error: str
    delay_ms: Annotated[int, Field(ge=0)]


@register
class JobFailed(EventModel):
    """A final failure: the job will not run again (it is dead-lettered next)."""

    EVENT_TYPE = "job.failed"
    job_id: JobId
    queue: QueueName
    attempt: Annotated[int, Field(ge=1)]
    error: str


@register
class JobDeadLettered(EventModel):
    EVENT_TYPE = "job.dead_lettered"
    job_id: JobId
    queue: QueueName
    reason: str
    error: str


@register
class JobRedriven(EventModel):
    """A dead-lettered job put back on its queue by an operator (``pipeline dlq redrive``)."""

    EVENT_TYPE = "job.redriven"
    job_id: JobId
    queue: QueueName


LIFECYCLE = (JobCreated, JobProgress, JobCompleted, JobRetried, JobFailed, JobDeadLettered,
             JobRedriven)
