"""The one exception tree of the pipeline.

Every error the library raises on purpose is a ``PipelineError``. Control flow that is
not a failure (asking for a retry) lives apart, under ``Retry``.
"""

from __future__ import annotations

from collections.abc import Mapping


class PipelineError(Exception):
    """Root of every error raised by this library."""


class ConfigError(PipelineError):
    """A setting, an argument or an option is wrong; the message says which and what to do."""


class InvalidName(ConfigError):
    """A malformed name or id given by the caller (queue, group, topic, job id): on the
    command line a usage error, exit 2."""


class ServerError(PipelineError):
    """The Redis server could not be started, reached or used."""


class DecodeError(PipelineError):
    """A stream entry is not a valid event. Carries the raw fields so nothing is lost."""

    def __init__(self, reason: str, raw: Mapping[bytes, bytes] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw: dict[bytes, bytes] = dict(raw or {})


class ValidationFailed(PipelineError):
    """Input given to the library (jobs, events) is invalid; the message names what and where."""


class JobsNotAnArray(ValidationFailed):
    """``create_push_notifications_jobs`` was given something that is not a list."""

    def __init__(self) -> None:
        super().__init__("Jobs is not an array")


class NotFound(PipelineError):
    """The thing asked for (a job, a dead letter) does not exist."""


class Fail(PipelineError):
    """Raised by a handler: a permanent failure. The entry is dead-lettered, never retried."""


class Retry(Exception):
    """Raised by a handler: a transient failure. The entry is retried with backoff.

    ``delay_ms`` overrides the computed backoff for this attempt.
    """

    def __init__(self, reason: str = "retry requested", *, delay_ms: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_ms = delay_ms
