"""Reading what clients send, strictly: ids in paths, query parameters (only the ones a route
takes), and JSON bodies (content type, size, shape). Anything off is refused before Redis is
touched.

Ids: an item id is the canonical decimal text of a non-negative integer of at most 18
digits: ``"1"`` is item 1; ``"1abc"``, ``"01"``, ``"+1"``, ``"-1"``, ``"1.0"``, ``" 1"`` and
``"99999999999999999999"`` are no item at all. (Express's ``parseInt`` read ``"1abc"`` as 1;
one id, one spelling, so that a cache, a log and the ledger never disagree on which item a
request meant.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from pipeline.api.responses import Problem, invalid

ITEM_ID_PATTERN = r"^(0|[1-9][0-9]{0,17})$"
#: a reservation id (the ``Idempotency-Key`` header)
KEY_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
#: the largest request body accepted, in bytes
MAX_BODY = 64 * 1024

_ITEM_ID = re.compile(ITEM_ID_PATTERN)
M = TypeVar("M", bound=BaseModel)


def item_id(text: str) -> int | None:
    """The item id ``text`` spells, or None when it is not one (see the module doc)."""
    if not _ITEM_ID.fullmatch(text):
        return None
    return int(text)


def _check_content_type(request: Request) -> None:
    raw = request.headers.get("content-type", "")
    media = raw.split(";", 1)[0].strip().lower()
    if media != "application/json":
        shown = raw or "none"
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"send the body as application/json (got {shown})",
                      headers={"Accept-Post": "application/json"})
    charset = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_\-]+)", raw)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"the body must be UTF-8 (got charset={charset.group(1)})")


def _too_large() -> Problem:
    return Problem(413, "payload-too-large", "Payload too large",
                   f"the body must be at most {MAX_BODY} bytes")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _declares_no_body(request: Request) -> bool:
    declared = request.headers.get("content-length")
    if declared is not None:
        return declared.strip().isdigit() and int(declared) == 0
    return "transfer-encoding" not in request.headers  # HTTP/1.1: then there is none


async def read_json(request: Request, *, optional: bool = False) -> Any:
    """The request's JSON body; 415 for another content type, 413 past ``MAX_BODY``
    (refused from Content-Length alone when it says so, else while reading), 400 when it
    is not JSON.

    With ``optional`` (a route whose body may be left out), a request that sends no body
    (``Content-Length: 0``, or neither Content-Length nor Transfer-Encoding) reads as
    ``{}``, whatever its content type, and so does a chunked JSON body of no bytes; a body
    that is there is read as above."""
    if optional and _declares_no_body(request):
        return {}
    _check_content_type(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if optional and not raw:
        return {}
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except ValueError as exc:  # also bad UTF-8, and integers past Python's digit limit
        raise Problem(400, "malformed-json", "Bad request",
                      f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # [[[[... deeper than the parser's stack
        raise Problem(400, "malformed-json", "Bad request",
                      "the body is not valid JSON here: nested too deeply") from None


def validate(model: type[M], value: Any) -> M:
    """``value`` as ``model``; a 422 problem naming each bad field otherwise."""
    if not isinstance(value, dict):
        raise invalid([{"loc": (), "msg": "the body must be a JSON object"}])
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc.errors()) from None


def check_query(request: Request, allowed: Sequence[str],
                slug: str = "unknown-query-parameter") -> None:
    """A 400 problem (``slug``) when the query string names a parameter not in ``allowed``:
    a misspelt filter (``?queu=q``) must not silently answer for everything."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if not unknown:
        return
    if not allowed:
        hint = "this route takes no query parameters"
    elif len(allowed) == 1:
        hint = f"use {allowed[0]}"
    else:
        hint = f"use {', '.join(allowed[:-1])} and {allowed[-1]}"
    raise Problem(400, slug, "Bad request", f"unknown query parameter {unknown[0]!r}: {hint}")


def _declared_query(dependant: Any) -> Iterable[str]:
    todo = [dependant]
    while todo:
        d = todo.pop()
        yield from (f.alias for f in d.query_params)
        todo.extend(d.dependencies)


async def declared_query_only(request: Request) -> None:
    """A FastAPI dependency: ``check_query`` against the query parameters the matched route
    declares, so that a route accepts exactly what its signature (and OpenAPI) says."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is not None:
        check_query(request, list(dict.fromkeys(_declared_query(dependant))))
