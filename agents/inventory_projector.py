"""The inventory projector: folds the reservations ledger into read models.

- ``<base>:proj:inventory``  HASH resource id -> available count (products and seats)
- ``<base>:proj:customers``  HASH customer -> reservations held (confirmed minus cancelled)
- ``<base>:proj:inventory:checkpoint`` the last ledger entry applied

Run it (one per ledger partition; it resumes its own pending entries first):
``pipeline worker agents.inventory_projector``. Rebuild it from the ledger with
``pipeline replay inventory``; check it with ``pipeline audit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.projector import Projection, Writes, projector_agent
from pipeline.reservations import TOPIC


class InventoryProjection(Projection):
    name = "inventory"
    topic = TOPIC
    models = ("inventory", "customers")

    def apply(self, event_type: str, data: Mapping[str, Any], out: Writes) -> None:
        if event_type == "reservation.confirmed":
            out.hincrby("inventory", data["resource_id"], -data["quantity"])
            if data["customer"] is not None:
                out.hincrby("customers", data["customer"], 1)
        elif event_type == "reservation.cancelled":
            out.hincrby("inventory", data["resource_id"], data["quantity"])
            if data["customer"] is not None:
                out.hincrby("customers", data["customer"], -1)
        elif event_type == "inventory.defined":
            out.hset("inventory", data["resource_id"], data["quantity"])
        elif event_type == "inventory.stock_added":
            out.hincrby("inventory", data["resource_id"], data["quantity"])
        # reservation.rejected and anything else change no count


projection = InventoryProjection()
agent = projector_agent(projection)
