"""Settings, read from the environment (prefix ``PIPELINE_``) and overridable by CLI options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the runtime. ``REDIS_URL`` (or ``PIPELINE_REDIS_URL``) wins over the
    embedded server; without it an embedded Valkey runs from ``data_dir``."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_", extra="forbid", frozen=True, validate_default=True
    )

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("PIPELINE_REDIS_URL", "REDIS_URL", "redis_url")
    )
    data_dir: Path = Path(".pipeline")
    appendfsync: Literal["everysec", "always", "no"] = "everysec"

    socket_timeout: float = Field(default=10.0, gt=0)
    block_ms: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    concurrency: int = Field(default=10, ge=1, le=100_000)
    prefetch: int | None = Field(default=None, ge=1)
    flush_ms: float = Field(default=2.0, ge=0)

    lease_ms: int = Field(default=30_000, ge=100)
    max_attempts: int = Field(default=5, ge=1)
    max_deliveries: int = Field(default=5, ge=1)
    backoff_base_ms: int = Field(default=1000, ge=0)
    backoff_max_ms: int = Field(default=300_000, ge=0)
    promote_interval_ms: int = Field(default=200, ge=10)
    consumer_gc_idle_ms: int = Field(default=3_600_000, ge=0)

    partitions: int = Field(default=1, ge=1, le=1024)
    dedup_ttl_s: int = Field(default=86_400, ge=1)
    events_maxlen: int = Field(default=100_000, ge=100)
    shutdown_deadline_s: float = Field(default=30.0, ge=0)
    #: a handler running longer is cancelled and counts as a transient failure; None: no limit
    handler_timeout_s: float | None = Field(default=None, gt=0)

    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.backoff_max_ms < self.backoff_base_ms:
            raise ValueError("backoff_max_ms must be >= backoff_base_ms")
        return self

    @property
    def effective_block_ms(self) -> int:
        """BLOCK for XREADGROUP, always shorter than the socket timeout so a quiet stream
        never trips the client's timeout (a blocking read that raises would look like a
        dead server)."""
        ceiling = int(self.socket_timeout * 1000) - 500
        return max(1, min(self.block_ms, ceiling if ceiling > 0 else int(self.socket_timeout * 500)))

    @property
    def effective_prefetch(self) -> int:
        """How many entries one worker holds at most (running + waiting for a slot)."""
        if self.prefetch is not None:
            return self.prefetch
        return max(1, min(self.batch_size, self.concurrency * 2))
