"""The base of every event model, and the registry that maps an envelope's ``type`` to it."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict


class EventModel(BaseModel):
    """An event payload: frozen, no unknown fields, strict types (no ``"1abc"`` -> 1).

    Subclasses set ``EVENT_TYPE`` (the envelope's ``type``) and ``EVENT_VERSION`` (``v``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)

    EVENT_TYPE: ClassVar[str] = ""
    EVENT_VERSION: ClassVar[int] = 1


E = TypeVar("E", bound=type[EventModel])

#: (type, version) -> model. Filled by ``register``; the library's own events register on import.
REGISTRY: dict[tuple[str, int], type[EventModel]] = {}


def register(model: E) -> E:
    """Class decorator: make ``model`` decodable from stream entries by its EVENT_TYPE."""
    if not model.EVENT_TYPE:
        raise TypeError(f"{model.__name__} must set EVENT_TYPE")
    key = (model.EVENT_TYPE, model.EVENT_VERSION)
    existing = REGISTRY.get(key)
    if existing is not None and existing is not model:
        raise TypeError(f"event type {key} is already registered by {existing.__name__}")
    REGISTRY[key] = model
    return model


def lookup(event_type: str, version: int) -> type[EventModel] | None:
    return REGISTRY.get((event_type, version))
