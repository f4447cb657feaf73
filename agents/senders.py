"""Where notifications go. A sender is ``async send(phone_number, message) -> None``.

``console`` prints the seed's line; ``webhook`` POSTs JSON and treats a non-2xx answer or a
network error as a transient failure (``Retry``), so the runtime retries it with backoff.
"""

from __future__ import annotations

import os
from typing import Protocol

import httpx

from pipeline.errors import ConfigError, Retry

SENDING_LINE = "Sending notification to {phoneNumber}, with message: {message}"


class Sender(Protocol):
    async def send(self, phone_number: str, message: str) -> None: ...


class ConsoleSender:
    """Prints ``Sending notification to <n>, with message: <m>`` (the seed's sender)."""

    async def send(self, phone_number: str, message: str) -> None:
        print(SENDING_LINE.format(phoneNumber=phone_number, message=message), flush=True)


class NullSender:
    """Sends nothing (benchmarks, dry runs)."""

    async def send(self, phone_number: str, message: str) -> None:
        return None


class WebhookSender:
    """POSTs ``{"phoneNumber": ..., "message": ...}`` to ``url``."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL {url!r} must start with http:// or https://")
        self.url = url
        self.client = httpx.AsyncClient(timeout=timeout)

    async def send(self, phone_number: str, message: str) -> None:
        try:
            response = await self.client.post(
                self.url, json={"phoneNumber": phone_number, "message": message}
            )
        except httpx.HTTPError as exc:
            raise Retry(f"webhook {self.url} unreachable: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise Retry(f"webhook {self.url} answered {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


def from_env() -> Sender:
    """``PIPELINE_SENDER``: ``console`` (default), ``null``, or ``webhook`` with
    ``PIPELINE_WEBHOOK_URL`` (and optional ``PIPELINE_WEBHOOK_TIMEOUT`` seconds)."""
    kind = os.environ.get("PIPELINE_SENDER", "console")
    if kind == "console":
        return ConsoleSender()
    if kind == "null":
        return NullSender()
    if kind == "webhook":
        url = os.environ.get("PIPELINE_WEBHOOK_URL", "")
        if not url:
            raise ConfigError("PIPELINE_SENDER=webhook needs PIPELINE_WEBHOOK_URL")
        try:
            timeout = float(os.environ.get("PIPELINE_WEBHOOK_TIMEOUT", "5"))
        except ValueError:
            raise ConfigError("PIPELINE_WEBHOOK_TIMEOUT must be a number of seconds") from None
        return WebhookSender(url, timeout)
    raise ConfigError(f"unknown PIPELINE_SENDER {kind!r}: use console, null or webhook")
