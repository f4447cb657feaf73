"""Schemathesis over ``/openapi.json`` of a real ``pipeline serve``: generated valid and
invalid requests to every documented operation never get a 5xx, and every answer matches
the document (status code, content type, body schema). Examples are bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.server import EmbeddedServer
from tests.processes import Servers

pytestmark = pytest.mark.timeout(300)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
async def test_generated_requests_match_the_openapi_document(
        server: EmbeddedServer, tmp_path: Path, mode: GenerationMode) -> None:
    servers = Servers(tmp_path, server.url)
    try:
        served = await servers.ready(servers.start())
        schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")

        cases = schema.as_strategy(generation_mode=mode)

        @settings(max_examples=150, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served.url, checks=CHECKS, timeout=10)

        # schemathesis calls are blocking: off the event loop that runs the test
        await asyncio.to_thread(check)
        assert served.stop() == 0, served.output()
    finally:
        servers.close()
