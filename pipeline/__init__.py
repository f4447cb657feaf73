"""An event-driven streams pipeline on Redis: producers, consumer-group agents, retries,
dead letters and projections. See the README for a tour."""

from pipeline.agent import Agent, Context, Hooks
from pipeline.errors import ConfigError, DecodeError, Fail, PipelineError, Retry, ServerError
from pipeline.producer import Producer
from pipeline.settings import Settings
from pipeline.worker import Worker

__all__ = [
    "Agent",
    "ConfigError",
    "Context",
    "DecodeError",
    "Fail",
    "Hooks",
    "PipelineError",
    "Producer",
    "Retry",
    "ServerError",
    "Settings",
    "Worker",
]
