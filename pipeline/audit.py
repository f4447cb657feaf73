"""The audit: fold the reservations ledger in plain Python and compare it with the live state.

- the write model (``<base>:stock`` and ``<base>:catalog``) against the fold of the whole
  ledger (as of one atomic snapshot of both);
- the read model (``proj:inventory``, ``proj:customers``) against the fold of exactly the
  entries the projector has applied: those up to its group's last-delivered id, minus the
  ones still pending in it (its writes land atomically with the ack), so a projector that
  lags behind or runs during the audit is no difference, but a lost or doubled write is;
- the ledger itself: every confirmation's ``remaining`` is the count the fold reaches, no
  count goes below zero, every entry decodes.

``until`` (an entry id or a time) folds the ledger only so far and reports the counts as of
then, without comparing (the live models are of now).

This fold is written apart from the projector's on purpose: two implementations that must
agree. It reads the ledger in big pages and parses with pydantic-core's JSON parser.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from pydantic_core import from_json

from pipeline.errors import ConfigError
from pipeline.replay import PAGE, check_entry_id, read_pages
from pipeline.reservations import LedgerKeys

#: what ``agents.inventory_projector`` writes (pipeline never imports agents)
PROJECTOR_GROUP = "projector-inventory"
PROJECTION = "inventory"
CUSTOMERS = "customers"
_MAX_SEQ = "18446744073709551615"
_CONFIRMED = b"reservation.confirmed"
_CANCELLED = b"reservation.cancelled"
_REJECTED = b"reservation.rejected"


@dataclass
class Difference:
    model: str  # write | read | ledger
    key: str
    expected: Any
    actual: Any

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "key": self.key, "expected": self.expected,
                "actual": self.actual}


@dataclass
class Fold:
    """The ledger folded: counts, catalog, customers, and what was wrong with the ledger."""

    counts: dict[str, int] = field(default_factory=dict)
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)
    entries: int = 0
    last_id: str = "0-0"
    problems: list[Difference] = field(default_factory=list)

    def copy(self) -> Fold:
        return Fold(dict(self.counts), {k: dict(v) for k, v in self.catalog.items()},
                    dict(self.customers), self.entries, self.last_id, list(self.problems))

    def fold(self, page: list[Any], skip: frozenset[bytes] = frozenset()) -> None:
        """Fold one page of raw XRANGE entries (skipping the ids in ``skip``).

        Confirmations, nearly every entry of a busy ledger, take a fast path that only
        accepts a well-formed, consistent one; anything else goes through ``_entry``."""
        counts, customers = self.counts, self.customers
        get_customer = customers.get
        parse, confirmed, rejected, slow = from_json, _CONFIRMED, _REJECTED, self._entry
        for entry_id, f in page:
            if skip and entry_id in skip:
                continue
            if len(f) == 8 and f[5] == b"1" and f[2] == b"type" and f[6] == b"data":
                etype = f[3]
                try:
                    if etype == confirmed:
                        p = parse(f[7])
                        rid, q, who = p["resource_id"], p["quantity"], p["customer"]
                        cur = counts[rid] - q
                        if cur == p["remaining"] and cur >= 0 and type(q) is int and q >= 1 \
                                and (who is None or type(who) is str):
                            counts[rid] = cur
                            if who is not None:
                                customers[who] = get_customer(who, 0) + 1
                            continue
                    elif etype == rejected and type(parse(f[7])["resource_id"]) is str:
                        continue
                except (ValueError, KeyError, TypeError):
                    pass
            slow(entry_id, f)
        if page:
            self.entries += len(page) - (len(skip & {e[0] for e in page}) if skip else 0)
            self.last_id = page[-1][0].decode()

    def _entry(self, entry_id: bytes, f: list[bytes]) -> None:
        """Fold any entry, with every check, reporting what is wrong with it."""
        counts, customers = self.counts, self.customers
        problem = self.problems.append
        d = dict(zip(f[::2], f[1::2], strict=False))
        etype, version, data = d.get(b"type"), d.get(b"v"), d.get(b"data")
        eid = entry_id.decode()
        try:
            if version != b"1" or data is None:
                raise ValueError(f"version {version!r}")
            p = from_json(data)
            if etype == _CONFIRMED or etype == _CANCELLED:
                rid, q, who = p["resource_id"], p["quantity"], p["customer"]
                if type(q) is not int or q < 1 or (who is not None and type(who) is not str):
                    raise ValueError("bad quantity or customer")
                cur = counts.get(rid)
                if cur is None:
                    problem(Difference("ledger", f"{eid} {rid}", "a defined resource",
                                       "undefined"))
                    return
                if etype == _CONFIRMED:
                    cur -= q
                    if cur != p["remaining"]:
                        problem(Difference("ledger", f"{eid} remaining {rid}", cur,
                                           p["remaining"]))
                    if cur < 0:
                        problem(Difference("ledger", f"{eid} {rid}", ">= 0", cur))
                    if who is not None:
                        customers[who] = customers.get(who, 0) + 1
                else:
                    cur += q
                    if who is not None:
                        customers[who] = customers.get(who, 0) - 1
                counts[rid] = cur
            elif etype == b"reservation.rejected" or etype == b"reservation.requested":
                if type(p["resource_id"]) is not str:
                    raise ValueError("bad resource_id")
            elif etype == b"inventory.defined":
                q = p["quantity"]
                if type(q) is not int or q < 0:
                    raise ValueError("bad quantity")
                rid = p["resource_id"]
                counts[rid] = q
                self.catalog[rid] = {"kind": p["kind"], "name": p["name"], "price": p["price"],
                                     "quantity": q, "defined_entry": eid}
            elif etype == b"inventory.stock_added":
                rid, q = p["resource_id"], p["quantity"]
                if type(q) is not int or q < 1 or rid not in counts:
                    raise ValueError("bad quantity or undefined resource")
                counts[rid] += q
            else:
                raise ValueError(f"unknown type {etype!r}")
        except (ValueError, KeyError, TypeError) as exc:
            problem(Difference("ledger", eid, "a valid event", f"{etype!r}: {exc}"))


@dataclass
class Report:
    ledger: Fold
    read: Fold | None
    until: str | None
    as_of: str
    projector_position: str | None = None
    projector_pending: int = 0
    checkpoint: str | None = None
    lag: int = 0
    write_counts: dict[str, int] = field(default_factory=dict)
    read_counts: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "as_of": self.as_of,
            "until": self.until,
            "ledger_entries": self.ledger.entries,
            "counts": self.ledger.counts,
            "customers": {k: v for k, v in self.ledger.customers.items() if v},
            "differences": [d.as_dict() for d in self.differences],
            "seconds": round(self.seconds, 3),
        }
        if self.until is None:
            out["write_model"] = self.write_counts
            out["read_model"] = self.read_counts
            out["projector"] = {"group": PROJECTOR_GROUP, "position": self.projector_position,
                                "pending": self.projector_pending, "lag": self.lag,
                                "checkpoint": self.checkpoint}
        return out


def until_id(value: str) -> str:
    """An entry id as given, or the last possible id of an ISO time (naive = UTC)."""
    if re.match(r"^\d+(-\d+)?$", value):
        return check_entry_id(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"invalid --until {value!r}: give an entry id (1700000000000-0) or an ISO time "
            "(2026-01-31T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{int(when.timestamp() * 1000)}-{_MAX_SEQ}"


def _id_key(entry_id: str | bytes) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _ints(raw: dict[bytes, bytes], model: str, out: list[Difference]) -> dict[str, int]:
    values = {}
    for k, v in raw.items():
        try:
            values[k.decode()] = int(v)
        except ValueError:
            out.append(Difference(model, k.decode(errors="replace"), "an integer",
                                  v.decode(errors="replace")))
    return values


def _compare(model: str, expected: dict[str, Any], actual: dict[str, Any],
             out: list[Difference], *, zero_is_missing: bool = False) -> None:
    for key in sorted(set(expected) | set(actual)):
        e, a = expected.get(key), actual.get(key)
        if zero_is_missing:
            e, a = e or None, a or None
        if e != a:
            out.append(Difference(model, key, e, a))


async def audit(redis: aioredis.Redis, partition: int = 0, *, until: str | None = None,
                page: int = PAGE) -> Report:
    """Fold the ledger and compare it with the write and read models (see the module)."""
    started = time.perf_counter()
    k = LedgerKeys(partition)
    keys = k.keys
    end = until_id(until) if until is not None else None
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(k.stock)
    pipe.hgetall(k.catalog)
    pipe.hgetall(keys.proj(PROJECTION))
    pipe.hgetall(keys.proj(CUSTOMERS))
    pipe.get(keys.checkpoint(PROJECTION))
    pipe.xrevrange(k.ledger, count=1)
    pipe.xinfo_groups(k.ledger)
    pipe.xpending_range(k.ledger, PROJECTOR_GROUP, "-", "+", 1_000_000)
    stock, catalog, inventory, customers, checkpoint, tip, groups, pending = \
        await pipe.execute(raise_on_error=False)
    tip_id = tip[0][0].decode() if tip else "0-0"
    # the group: its last-delivered id and pending entries (none if it does not exist)
    position: str | None = None
    lag = 0
    for g in groups if isinstance(groups, list) else []:
        if _text(g["name"]) == PROJECTOR_GROUP:
            position = _text(g["last-delivered-id"])
            lag = int(g.get("lag") or 0)
    pending_ids = frozenset() if position is None or not isinstance(pending, list) \
        else frozenset(_bytes(p["message_id"]) for p in pending)

    last = end or tip_id
    ledger = Fold()
    read: Fold | None = None
    separate = bool(pending_ids)  # with entries pending, the read fold differs from the ledger's
    read_upto = position or "0-0"
    read_fold = Fold() if separate else None
    upto_key = _id_key(read_upto)
    async for chunk in read_pages(redis, k.ledger, "-", last, page):
        if read_fold is not None:
            cut = _split(chunk, upto_key)
            read_fold.fold(chunk[:cut], pending_ids)
        elif read is None and _id_key(chunk[-1][0]) >= upto_key:
            cut = _split(chunk, upto_key)
            ledger.fold(chunk[:cut])
            read = ledger.copy()
            ledger.fold(chunk[cut:])
            continue
        ledger.fold(chunk)
    if read_fold is not None:
        read = read_fold
    elif read is None:
        read = ledger.copy()  # the group is at or after the ledger's end

    report = Report(ledger, read, until, ledger.last_id if end else tip_id,
                    projector_position=position, projector_pending=len(pending_ids),
                    checkpoint=checkpoint.decode() if isinstance(checkpoint, bytes) else None,
                    lag=lag)
    diffs = report.differences
    diffs.extend(ledger.problems)
    if until is None:
        report.write_counts = _ints(stock if isinstance(stock, dict) else {}, "write", diffs)
        _compare("write", ledger.counts, report.write_counts, diffs)
        defined = {}
        for rid, raw in (catalog if isinstance(catalog, dict) else {}).items():
            try:
                entry = from_json(raw)
                defined[rid.decode()] = {x: entry.get(x) for x in
                                         ("kind", "name", "price", "quantity", "defined_entry")}
            except ValueError:
                defined[rid.decode()] = raw.decode(errors="replace")
        _compare("write catalog", ledger.catalog, defined, diffs)
        report.read_counts = _ints(inventory if isinstance(inventory, dict) else {}, "read",
                                   diffs)
        _compare("read", read.counts, report.read_counts, diffs)
        actual_customers = _ints(customers if isinstance(customers, dict) else {},
                                 "read customers", diffs)
        _compare("read customers", read.customers, actual_customers, diffs,
                 zero_is_missing=True)
    report.seconds = time.perf_counter() - started
    return report


def _split(chunk: list[Any], upto: tuple[int, int]) -> int:
    """How many entries of ``chunk`` are at or before ``upto``."""
    lo, hi = 0, len(chunk)
    while lo < hi:
        mid = (lo + hi) // 2
        if _id_key(chunk[mid][0]) <= upto:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
