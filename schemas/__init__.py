"""Event models (pydantic v2), no I/O. ``Event`` is the union of every registered type."""

from schemas.base import REGISTRY, EventModel, lookup, register
from schemas.jobs import (
    LIFECYCLE,
    JobCompleted,
    JobCreated,
    JobDeadLettered,
    JobFailed,
    JobProgress,
    JobRedriven,
    JobRequested,
    JobRetried,
    PushNotification,
)
from schemas.reservations import (
    InventoryDefined,
    ReservationCancelled,
    ReservationConfirmed,
    ReservationRejected,
    ReservationRequested,
    StockAdded,
)

__all__ = [
    "LIFECYCLE",
    "REGISTRY",
    "EventModel",
    "InventoryDefined",
    "JobCompleted",
    "JobCreated",
    "JobDeadLettered",
    "JobFailed",
    "JobProgress",
    "JobRedriven",
    "JobRequested",
    "JobRetried",
    "PushNotification",
    "ReservationCancelled",
    "ReservationConfirmed",
    "ReservationRejected",
    "ReservationRequested",
    "StockAdded",
    "lookup",
    "register",
]
