"""The main job, as a user runs it: `pipeline demo` in a fresh folder, twice."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.compat import seed
from pipeline.server import STATE_FILE

PIPELINE = str(Path(sys.executable).parent / "pipeline")
JOBS = seed()["notifications"]["jobs"]


def _demo(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIPELINE_") and k != "REDIS_URL"}
    return subprocess.run([PIPELINE, "demo"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _check_run(out: str, first_id: int) -> list[str]:
    lines = out.splitlines()
    assert lines[0] == "Redis client connected to the server"
    ids = [f"push_notification_code_2:{n}" for n in range(first_id, first_id + 11)]
    assert lines[1:12] == [f"Notification job created: {i}" for i in ids]
    for job_id, job in zip(ids, JOBS, strict=True):
        assert f"Notification job {job_id} 0% complete" in lines
        if job["phoneNumber"] in ("4153518780", "4153518781"):
            assert (f"Notification job {job_id} failed: Phone number {job['phoneNumber']} "
                    "is blacklisted") in lines
            assert f"Notification job {job_id} 50% complete" not in lines
            assert f"Notification job {job_id} completed" not in lines
        else:
            assert f"Notification job {job_id} 50% complete" in lines
            assert f"Notification job {job_id} completed" in lines
            sending = f"Sending notification to {job['phoneNumber']}, with message: {job['message']}"
            assert sending in lines
            # the progress lines of a job come in order, completion last
            assert (lines.index(f"Notification job {job_id} 0% complete")
                    < lines.index(f"Notification job {job_id} 50% complete")
                    < lines.index(f"Notification job {job_id} completed"))
    assert "Summary: 11 jobs, 9 completed, 2 failed and dead-lettered, 0 pending" in lines
    assert sum(line.startswith("Sending notification to") for line in lines) == 9
    _check_reservations(lines)
    return ids


def _check_reservations(lines: list[str]) -> None:
    """The second half: products and seats through the seed's routes, then the audit."""
    products = seed()["products"]["items"]
    assert ("GET /list_products -> " + json.dumps(
        [{k: p[k] for k in ("itemId", "itemName", "price", "initialAvailableQuantity")}
         for p in products], separators=(",", ":"))) in lines
    for p in products:
        n, stock = p["itemId"], p["initialAvailableQuantity"]
        confirmed = f'GET /reserve_product/{n} -> {{"status":"Reservation confirmed","itemId":{n}}}'
        refused = (f'GET /reserve_product/{n} -> '
                   f'{{"status":"Not enough stock available","itemId":{n}}}  (x2)')
        confirmed += f"  (x{stock})" if stock > 1 else ""
        assert confirmed in lines and refused in lines
        assert lines.index(confirmed) + 1 == lines.index(refused)  # as the README shows
    assert 'GET /reserve_product/9 -> {"status":"Product not found"}' in lines
    assert 'GET /reserve_product/1abc -> {"status":"Product not found"}' in lines
    assert 'GET /reserve_seat -> {"status":"Reservation in process"}  (x52)' in lines
    assert 'GET /process -> {"status":"Queue processing"}' in lines
    assert 'GET /available_seats -> {"numberOfAvailableSeats":"0"}' in lines
    assert 'GET /reserve_seat -> {"status":"Reservation are blocked"}' in lines
    seat_lines = [x for x in lines if x.startswith("Seat reservation job")]
    assert sum(x.endswith(" completed") for x in seat_lines) == 50
    assert sum(x.endswith(" failed: Not enough seats available") for x in seat_lines) == 2

    def number(x: str) -> int:
        return int(x.split()[3].rsplit(":", 1)[1])

    # first come, first served: the last two requests are the ones refused
    seated = [number(x) for x in seat_lines if x.endswith(" completed")]
    refused = [number(x) for x in seat_lines if " failed: " in x]
    assert max(seated) < min(refused), seat_lines
    for rid in ("1", "2", "3", "4", "seats"):
        row = next(x.split() for x in lines if x.split()[:1] == [rid])
        assert row[-2:] == ["0", "0"], row  # sold out, in the write model and the read model
    assert lines[-1] == "audit: OK"


@pytest.mark.timeout(240)
def test_the_demo_runs_the_seed_jobs_twice_without_mixing_runs(tmp_path):
    first = _demo(tmp_path)
    assert first.returncode == 0, first.stderr
    ids1 = _check_run(first.stdout, 1)
    second = _demo(tmp_path)
    assert second.returncode == 0, second.stderr
    ids2 = _check_run(second.stdout, 12)
    for job_id in ids1:
        assert not re.search(rf"{re.escape(job_id)}\b", second.stdout)
    assert set(ids1).isdisjoint(ids2)
    # the embedded server stopped with its owner and left its data behind
    assert not (tmp_path / ".pipeline" / STATE_FILE).exists()
    assert (tmp_path / ".pipeline" / "appendonlydir").is_dir()


#: sha256 of ../shared/seed/seed.json as canonical JSON (sorted keys, no spaces)
SEED_SHA256 = "6f31c3f34b5cf96915f05abcae590c65d34cf9af3b1fb3de167e52d68a51a208"


def _canonical_sha256(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def test_the_seed_copy_shipped_in_the_package_is_the_seed():
    # a checkout without ../shared beside it still checks the copy, by the seed's digest
    assert _canonical_sha256(seed()) == SEED_SHA256
    shared = Path(__file__).resolve().parents[2] / "shared" / "seed" / "seed.json"
    if shared.exists():
        assert _canonical_sha256(json.loads(shared.read_text())) == SEED_SHA256


def test_the_packaged_seed_holds_the_exercise_strings():
    lines = seed()["notifications"]["lines"]
    assert lines["created"] == "Notification job created: {id}"
    assert lines["progress"] == "Notification job {id} {percent}% complete"
    assert lines["blacklisted_error"] == "Phone number {phoneNumber} is blacklisted"
    assert lines["not_an_array_error"] == "Jobs is not an array"
    assert len(seed()["notifications"]["jobs"]) == 11
