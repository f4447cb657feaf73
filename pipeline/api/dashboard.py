"""The dashboard at ``/``: one HTML page with plain JavaScript and inline SVG, served from
the package (``pipeline/api/static``), no build step. The page reads only the public API:
``/v1/queues``, ``/v1/deadletters``, ``/v1/products``, ``/v1/seats``, ``/v1/streams`` (polled)
and ``/v1/events`` (server-sent events), so whatever it shows a script can read too."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import Response

from pipeline.api.responses import Problem

router = APIRouter(include_in_schema=False)

#: the files the page is made of, and their types; nothing else is served from the folder
ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
#: the page is small and changes with the package: always revalidate
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


@cache
def asset(name: str) -> bytes:
    """One of ``ASSETS``, read from the installed package."""
    return resources.files("pipeline.api").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(asset(name), media_type=ASSETS[name], headers=_HEADERS)


@router.get("/")
async def page() -> Response:
    return _serve("dashboard.html")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in ASSETS:
        raise Problem(404, "not-found", "Not found", f"no static file {name!r}")
    return _serve(name)
