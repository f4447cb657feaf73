"""How the API answers: the seed's bodies exactly as Express sent them, and RFC 9457
problem details (``application/problem+json``) for every error of the versioned API."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

#: Express's ``res.json`` content type
EXPRESS_JSON = "application/json; charset=utf-8"
PROBLEM_JSON = "application/problem+json"


def express_json(body: Any) -> bytes:
    """``JSON.stringify(body)``: no spaces, keys in insertion order, UTF-8 as is."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class SeedJSON(JSONResponse):
    """A body byte for byte as the seed's Express server sent it (status 200 by default)."""

    media_type = EXPRESS_JSON

    def render(self, content: Any) -> bytes:
        return express_json(content)


class Problem(Exception):
    """An error answered as problem details: ``type`` is ``urn:pipeline:problem:<slug>``."""

    def __init__(self, status: int, slug: str, title: str, detail: str,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:pipeline:problem:{problem.slug}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(problem.extra)
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON,
                        headers=problem.headers)


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "path", "query", "header")]
    return ".".join(parts) or "request"


def invalid(errors: Sequence[Mapping[str, Any]], detail: str | None = None) -> Problem:
    """A 422 problem listing pydantic-style errors as ``{field, message}``."""
    listed = [{"field": _where(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
              for e in errors]
    if detail is None:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in listed) or "invalid request"
    return Problem(422, "invalid-request", "Invalid request", detail, errors=listed)


_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed",
           413: "Payload too large", 415: "Unsupported media type"}


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) as problem details too."""
    assert isinstance(exc, HTTPException)
    title = _TITLES.get(exc.status_code, "Error")
    slug = title.lower().replace(" ", "-")
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    return problem_response(Problem(exc.status_code, slug, title, detail, exc.headers),
                            request.url.path)


async def on_redis_down(request: Request, exc: Exception) -> Response:
    """Redis unreachable: 503, so a client (or a load balancer) knows to retry."""
    return problem_response(Problem(503, "redis-unavailable", "Service unavailable",
                                    f"Redis cannot be reached now ({exc}); try again",
                                    {"Retry-After": "1"}), request.url.path)


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(invalid(exc.errors()), request.url.path)
