"""Long-lived commands (`serve`, `jobs watch`, `status --watch`, `subscribe`): a signal is a
normal end (exit 0), a closed stdout ends them quietly, they outlive the embedded server's
owner, and a one-shot command says when it had to start a server of its own."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from pipeline.server import running
from pipeline.testing import wait_for

PIPELINE = str(Path(sys.executable).parent / "pipeline")
ROOT = Path(__file__).resolve().parents[1]


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIPELINE_") and k != "REDIS_URL"}
    return {**env, "PIPELINE_LOG_FORMAT": "json", **more}


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([PIPELINE, *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


async def _first_line_then_close(proc: subprocess.Popen[str]) -> str:
    """Read stdout's first line, then close it, as `| head -1` does."""
    assert proc.stdout is not None
    first = await asyncio.to_thread(proc.stdout.readline)
    proc.stdout.close()
    return first


async def _ended(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Its exit code (killed after 30 s) and all it wrote on stderr."""
    try:
        rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    return rc, err


async def _clients(redis) -> int:
    return len(await redis.client_list())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("args", [
    ["jobs", "watch", "--queue", "q"],
    ["status", "--watch", "--interval", "0.2"],
    ["subscribe", "some channel"],
], ids=["jobs-watch", "status-watch", "subscribe"])
async def test_sigterm_ends_a_watcher_with_exit_0_and_no_error(redis, server, tmp_path, args):
    before = await _clients(redis)
    proc = _start(args, _env(REDIS_URL=server.url), tmp_path)
    try:
        async def connected() -> bool:
            return await _clients(redis) > before

        await wait_for(connected, timeout=30)
        await asyncio.sleep(0.5)  # well inside its loop
        rc, _, err = await asyncio.to_thread(_stop, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert rc == 0, err
    assert "error" not in err and "Traceback" not in err, err

    async def gone() -> bool:
        return await _clients(redis) == before

    await wait_for(gone, timeout=10)  # it closed every connection it had


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["status", "--watch"], ["doctor"], ["--help"],
    ["jobs", "watch", "--help"], ["control", "status", "--json"],
], ids=" ".join)
def test_a_command_whose_stdout_is_closed_exits_0_quietly(server, tmp_path, args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -1` once it has its line
    try:
        done = subprocess.run([PIPELINE, *args], env=_env(REDIS_URL=server.url), cwd=tmp_path,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.timeout(60)
async def test_a_closed_stdout_ends_status_watch_quietly(redis, server, tmp_path):
    await redis.xadd("t:jobs:q:0", {"x": "1"})
    proc = _start(["status", "--watch", "--json", "--interval", "0.2"],
                  _env(REDIS_URL=server.url), tmp_path)
    try:
        assert (await _first_line_then_close(proc)).startswith("[")
    finally:
        rc, err = await _ended(proc)
    assert rc == 0, err
    assert err == "", err


@pytest.mark.parametrize("args", [["--watch", "--interval", "0"], ["--interval", "5"]],
                         ids=["out-of-range", "without-watch"])
def test_a_bad_watch_interval_is_a_one_line_error(tmp_path, args):
    result = subprocess.run([PIPELINE, "status", *args], cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / ".pipeline").exists()  # refused before starting anything


OWNER = textwrap.dedent(
    """
    import sys, time
    from pipeline.server import ensure_embedded
    e = ensure_embedded(sys.argv[1])
    print(e.pid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.timeout(120)
async def test_serve_keeps_answering_after_the_embedded_servers_owner_exits(tmp_path):
    data = tmp_path / "data"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(data)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    first_pid = int(owner.stdout.readline())
    serve = _start(["serve", "--port", "0"], _env(PIPELINE_DATA_DIR=str(data)), tmp_path)
    try:
        assert serve.stdout is not None
        ready = await asyncio.to_thread(serve.stdout.readline)
        match = re.search(r"http://[\d.]+:(\d+)", ready)
        assert match, ready
        base = f"http://127.0.0.1:{match.group(1)}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (await http.get("/list_products")).status_code == 200
            owner.terminate()
            owner.wait(10)

            async def first_gone() -> bool:
                return not Path(f"/proc/{first_pid}").exists()

            await wait_for(first_gone, timeout=20)

            async def answering() -> bool:
                return (await http.get("/list_products")).status_code == 200

            await wait_for(answering, timeout=30)

        async def recorded() -> bool:  # the state file is written just after it answers
            return running(data)

        await wait_for(recorded, timeout=10)  # a server again, now owned by serve
        rc, _, err = await asyncio.to_thread(_stop, serve)
        assert rc == 0, err
        assert "embedded_server_restarted" in err

        async def stopped_with_serve() -> bool:
            return not running(data)

        await wait_for(stopped_with_serve, timeout=20)
    finally:
        for proc in (owner, serve):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _control_status(cwd: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PIPELINE, "control", "status"], cwd=cwd,
                          env=_env(PIPELINE_DATA_DIR=str(data)), capture_output=True,
                          text=True, timeout=60)


def test_a_command_that_had_to_start_the_server_says_so(tmp_path):
    data = tmp_path / "data"
    alone = _control_status(tmp_path, data)
    assert alone.returncode == 0, alone.stderr
    assert f"note: no server was running for {data.resolve()}" in alone.stderr
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(data)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        owner.stdout.readline()
        shared = _control_status(tmp_path, data)
    finally:
        owner.terminate()
        owner.communicate(timeout=20)
    assert shared.returncode == 0, shared.stderr
    assert "note:" not in shared.stderr


@pytest.mark.timeout(90)
async def test_a_worker_whose_stdout_is_closed_still_completes_its_jobs(redis, server,
                                                                       tmp_path):
    from pipeline.jobs import JobQueue
    from schemas.jobs import PushNotification

    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -1` once it has its line
    try:
        worker = subprocess.Popen(
            [PIPELINE, "worker", "agents.notifications", "--queue", "q"],
            env=_env(REDIS_URL=server.url, PIPELINE_BLOCK_MS="100"), cwd=tmp_path,
            stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    try:
        queue = JobQueue(redis, "q")
        ids = await queue.create([PushNotification.model_validate(
            {"phoneNumber": "4155550100", "message": f"m{n}"}) for n in range(3)])

        async def all_completed() -> bool:
            return [(await queue.get(i)).state for i in ids] == ["completed"] * len(ids)

        await wait_for(all_completed, timeout=60)  # printing failed; the jobs did not
        assert [(await queue.get(i)).attempts for i in ids] == [1, 1, 1]
        rc, _, err = await asyncio.to_thread(_stop, worker)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert rc == 0, err
    assert err.count('"stdout_closed"') == 1, err


@pytest.mark.timeout(60)
async def test_a_subscriber_whose_stdout_is_closed_exits_0_at_its_next_message(
        redis, server, tmp_path):
    sub = _start(["subscribe", "c"], _env(REDIS_URL=server.url), tmp_path)
    try:
        assert await _first_line_then_close(sub) == "Redis client connected to the server\n"

        async def subscribed() -> bool:
            return (await redis.pubsub_numsub("c"))[0][1] >= 1

        await wait_for(subscribed, timeout=30)
        await redis.publish("c", "a message nobody reads")
    finally:
        rc, err = await _ended(sub)
    assert rc == 0, err
    assert err == "", err
