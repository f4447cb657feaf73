"""The embedded server: reuse by state file, stale state, parent death, AOF on stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis as sync_redis

from pipeline.server import STATE_FILE, EmbeddedServer, ensure_embedded, socket_path_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


OWNER = textwrap.dedent(
    """
    import sys, time
    from pipeline.server import ensure_embedded
    e = ensure_embedded(sys.argv[1])
    print(e.pid, e.url, flush=True)
    time.sleep(60)
    """
)


def _start_owner(data_dir: Path) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(data_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid, url = proc.stdout.readline().split()
    return proc, int(pid), url


def test_a_second_command_in_the_same_folder_reuses_the_server(tmp_path):
    proc, pid, url = _start_owner(tmp_path)
    try:
        reused = ensure_embedded(tmp_path)
        assert reused.owned is None
        assert (reused.pid, reused.url) == (pid, url)
        with sync_redis.Redis.from_url(url) as client:
            assert client.ping()
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()


def test_the_server_dies_with_its_owner_even_on_sigkill(tmp_path):
    proc, pid, url = _start_owner(tmp_path)
    with sync_redis.Redis.from_url(url) as client:
        client.set("k", "v")
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert _wait_dead(pid), "the embedded server outlived its SIGKILLed owner"
    # the parent-death signal is SIGTERM: Valkey flushed the AOF, the data survives
    again = ensure_embedded(tmp_path)
    try:
        assert again.owned is not None and again.pid != pid
        with sync_redis.Redis.from_url(again.url) as client:
            assert client.get("k") == b"v"
    finally:
        again.owned.stop()


def test_a_stale_state_file_is_detected_and_replaced(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": dead.pid, "socket": "/nope.sock"}))
    fresh = ensure_embedded(tmp_path)
    try:
        assert fresh.owned is not None
        state = json.loads((tmp_path / STATE_FILE).read_text())
        assert state["pid"] == fresh.pid
    finally:
        fresh.owned.stop()


def test_a_graceful_stop_keeps_every_write_in_the_aof(tmp_path):
    server = EmbeddedServer(tmp_path, appendfsync="everysec")
    server.start()
    with sync_redis.Redis.from_url(server.url) as client:
        client.xadd("s", {"n": "1"})
    server.stop()
    again = EmbeddedServer(tmp_path)
    again.start()
    try:
        with sync_redis.Redis.from_url(again.url) as client:
            assert client.xlen("s") == 1
    finally:
        again.stop()


def test_a_long_folder_gets_a_socket_path_that_fits(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    path = socket_path_for(deep)
    assert len(str(path)) <= 100
    assert path != socket_path_for(tmp_path / "other")


def test_a_command_right_after_the_owner_died_waits_for_the_old_server_to_go(tmp_path):
    proc, pid, url = _start_owner(tmp_path)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    fresh = ensure_embedded(tmp_path)  # at once: the old server may still be shutting down
    try:
        assert fresh.pid != pid
        assert _wait_dead(pid)
        # the old server's exit did not take the new server's socket with it
        with sync_redis.Redis.from_url(fresh.url) as client:
            assert client.ping()
    finally:
        fresh.owned.stop()
