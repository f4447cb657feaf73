"""Reading what clients send, strictly: ids in paths, and JSON bodies (content type, size,
shape). Anything off is refused before Redis is touched.

Ids: an item id is the canonical decimal text of a non-negative integer of at most 18
digits: ``"1"`` is item 1; ``"1abc"``, ``"01"``, ``"+1"``, ``"-1"``, ``"1.0"``, ``" 1"`` and
``"99999999999999999999"`` are no item at all. (Express's ``parseInt`` read ``"1abc"`` as 1;
one id, one spelling, so that a cache, a log and the ledger never disagree on which item a
request meant.)
"""

from __future__ import annotations

import json
import re
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


async def read_json(request: Request) -> Any:
    """The request's JSON body; 415 for another content type, 413 past ``MAX_BODY``
    (refused from Content-Length alone when it says so, else while reading), 400 when it
    is not JSON."""
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
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except ValueError as exc:  # also bad UTF-8, and integers past Python's digit limit
        raise Problem(400, "malformed-json", "Bad request",
                      f"the body is not valid JSON: {exc}") from None


def validate(model: type[M], value: Any) -> M:
    """``value`` as ``model``; a 422 problem naming each bad field otherwise."""
    if not isinstance(value, dict):
        raise invalid([{"loc": (), "msg": "the body must be a JSON object"}])
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc.errors()) from None
