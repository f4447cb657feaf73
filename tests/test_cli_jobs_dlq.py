"""``pipeline jobs`` and ``pipeline dlq``: the real console script, in a subprocess, against a
real server. Independent invocations run side by side to keep the file fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from agents import notifications
from agents.senders import NullSender
from pipeline.cli.main import app
from pipeline.deadletter import DeadLetters
from pipeline.jobs import JobQueue
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from schemas.jobs import PushNotification

pytestmark = pytest.mark.timeout(30)

PIPELINE = Path(sys.executable).parent / "pipeline"
QUEUE = "cli_q"
BLOCKED = "4153518780"
FINE = "4155550100"

Call = tuple[list[str], str | None]


def cli_many(calls: list[Call], url: str) -> list[subprocess.CompletedProcess[str]]:
    """Run ``pipeline`` once per call, all at once; results in the same order."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["REDIS_URL"] = url
    procs = [
        (subprocess.Popen([str(PIPELINE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env), stdin)
        for args, stdin in calls
    ]
    done = []
    for proc, stdin in procs:
        out, err = proc.communicate(stdin or "", timeout=25)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def cli(*args: str, url: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli_many([(list(args), stdin)], url)[0]


def jobs_file(tmp_path: Path, jobs: object) -> str:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(jobs))
    return str(path)


def notification(phone: str, n: int) -> dict[str, str]:
    return {"phoneNumber": phone, "message": f"message {n}"}


async def settled_jobs(redis: aioredis.Redis, settings: Settings, phones: list[str]
                       ) -> list[str]:
    """Jobs run by the notification agent until each is failed (blacklisted) or completed."""
    queue = JobQueue(redis, QUEUE)
    ids = await queue.create(
        [PushNotification.model_validate({"phoneNumber": p, "message": "hi"}) for p in phones])

    async def settled() -> bool:
        states = [(await queue.get(i)).state for i in ids]
        return all(state in ("failed", "completed") for state in states)

    async with running(notifications.agent(QUEUE, sender=NullSender()), redis, settings):
        await wait_for(settled, message="jobs settled")
    return ids


# ---------------------------------------------------------------- jobs


async def test_jobs_create_prints_one_line_per_job_of_a_small_file(
    server: EmbeddedServer, redis: aioredis.Redis, tmp_path: Path
) -> None:
    path = jobs_file(tmp_path, [notification(FINE, n) for n in range(3)])

    done = cli("jobs", "create", "--queue", QUEUE, "--file", path, url=server.url)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Notification job created: {QUEUE}:{n}" for n in (1, 2, 3)]
    job = await JobQueue(redis, QUEUE).get(f"{QUEUE}:2")
    assert (job.state, job.data) == ("queued", notification(FINE, 1))


async def test_jobs_create_reads_the_jobs_from_stdin_given_dash(
    server: EmbeddedServer, redis: aioredis.Redis
) -> None:
    done = cli("jobs", "create", "-q", QUEUE, "-f", "-", url=server.url,
               stdin=json.dumps([notification(FINE, 7)]))

    assert done.stdout == f"Notification job created: {QUEUE}:1\n", done.stderr
    assert (await JobQueue(redis, QUEUE).get(f"{QUEUE}:1")).data == notification(FINE, 7)


async def test_jobs_create_of_a_big_file_creates_in_chunks_and_prints_one_count_line(
    server: EmbeddedServer, redis: aioredis.Redis, tmp_path: Path
) -> None:
    path = jobs_file(tmp_path, [notification(FINE, n) for n in range(1001)])

    done = cli("jobs", "create", "--queue", QUEUE, "--file", path, url=server.url)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Notification jobs created: 1001 on {QUEUE} ({QUEUE}:1 .. {QUEUE}:1001)"]
    queue = JobQueue(redis, QUEUE)
    assert await redis.xlen(queue.keys.stream) == 1001
    assert (await queue.get(f"{QUEUE}:1001")).data == notification(FINE, 1000)


async def test_jobs_show_prints_state_progress_attempts_error_data_and_timestamps(
    server: EmbeddedServer, redis: aioredis.Redis, settings: Settings
) -> None:
    [job_id] = await settled_jobs(redis, settings, [BLOCKED])

    text, as_json = cli_many([(["jobs", "show", job_id], None),
                              (["jobs", "show", job_id, "--json"], None)], server.url)

    lines = dict(line.split(":", 1) for line in text.stdout.splitlines())
    assert lines["state"].strip() == "failed"
    assert lines["attempts"].strip() == "1"
    assert lines["error"].strip() == f"Phone number {BLOCKED} is blacklisted"
    assert json.loads(lines["data"]) == {"phoneNumber": BLOCKED, "message": "hi"}
    assert lines["created"].strip().startswith("20") and "progress" in lines
    shown = json.loads(as_json.stdout)
    assert (shown["id"], shown["state"], shown["progress"]) == (job_id, "failed", 0)
    assert shown["created_at"] > 0


async def test_jobs_list_shows_a_table_filtered_by_state(
    server: EmbeddedServer, redis: aioredis.Redis, settings: Settings
) -> None:
    failed, completed = await settled_jobs(redis, settings, [BLOCKED, FINE])

    table, every = cli_many([(["jobs", "list", "--queue", QUEUE, "--state", "failed"], None),
                             (["jobs", "list", "--queue", QUEUE, "--json"], None)], server.url)

    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if QUEUE + ":" in line]
    assert failed in row and "failed" in row and BLOCKED in row
    assert completed not in table.stdout
    assert [(j["id"], j["state"]) for j in json.loads(every.stdout)] == [
        (failed, "failed"), (completed, "completed")]


# ---------------------------------------------------------------- wrong inputs

WRONG: list[tuple[str, list[str], str | None, str]] = [
    ("not an array", ["jobs", "create", "-q", QUEUE, "-f", "-"], '{"a": 1}',
     "error: Jobs is not an array"),
    ("missing field", ["jobs", "create", "-q", QUEUE, "-f", "-"],
     json.dumps([notification(FINE, 0), {"phoneNumber": FINE}]), "job 1: message: Field required"),
    ("bad json", ["jobs", "create", "-q", QUEUE, "-f", "-"], "[{", "is not valid JSON"),
    ("json nested too deeply", ["jobs", "create", "-q", QUEUE, "-f", "-"], "[" * 100_000,
     "is not valid JSON here: nested too deeply"),
    ("missing file", ["jobs", "create", "-q", QUEUE, "-f", "/nonexistent/jobs.json"], None,
     "no such file: /nonexistent/jobs.json"),
    ("bad queue name", ["jobs", "list", "--queue", "bad name"], None, "invalid queue name"),
    ("missing option", ["jobs", "list"], None, "Missing option '--queue'"),
    ("unknown job", ["jobs", "show", f"{QUEUE}:99"], None, f"no job '{QUEUE}:99'"),
    ("bad state", ["jobs", "list", "-q", QUEUE, "--state", "bogus"], None,
     "unknown state 'bogus': use one of queued, active, completed, delayed, failed"),
    ("both queue and topic", ["dlq", "list", "--queue", QUEUE, "--topic", f"jobs:{QUEUE}"], None,
     "give exactly one of --queue QUEUE or --topic TOPIC"),
    ("neither queue nor topic", ["dlq", "list"], None,
     "give exactly one of --queue QUEUE or --topic TOPIC"),
    ("unknown dead letter", ["dlq", "redrive", "1-0", "--queue", QUEUE], None,
     "no dead letter 1-0"),
]


async def test_wrong_inputs_are_one_line_errors_naming_the_problem(
    server: EmbeddedServer, redis: aioredis.Redis
) -> None:
    results = cli_many([(args, stdin) for _, args, stdin, _ in WRONG], server.url)

    for (case, _, _, expected), done in zip(WRONG, results, strict=True):
        assert done.returncode != 0, case
        assert done.stderr.startswith("error: "), (case, done.stderr)
        assert len(done.stderr.splitlines()) == 1, (case, done.stderr)
        assert expected in done.stderr, (case, done.stderr)
    assert await redis.dbsize() == 0  # nothing was created by a wrong input


# ---------------------------------------------------------------- dlq


async def test_dlq_list_and_show_print_the_dead_letters(
    server: EmbeddedServer, redis: aioredis.Redis, settings: Settings
) -> None:
    [job_id] = await settled_jobs(redis, settings, [BLOCKED])
    [dead] = await DeadLetters.for_queue(redis, QUEUE).list()

    table, rows, shown = cli_many([
        (["dlq", "list", "--queue", QUEUE], None),
        (["dlq", "list", "--topic", f"jobs:{QUEUE}", "--json"], None),
        (["dlq", "show", dead.dead_id, "--queue", QUEUE, "--json"], None),
    ], server.url)

    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if dead.dead_id in line]
    assert "permanent_failure" in row and job_id in row and "job.requested" in row
    assert json.loads(rows.stdout) == [{
        "id": dead.dead_id, "reason": "permanent_failure",
        "error": f"Phone number {BLOCKED} is blacklisted", "event_id": job_id,
        "type": "job.requested", "attempts": 1, "dead_at": dead.dead_at}]
    fields = json.loads(shown.stdout)
    assert fields["raw:id"] == job_id and "Traceback" in fields["traceback"]


async def test_dlq_redrive_puts_the_job_back_in_its_queue(
    server: EmbeddedServer, redis: aioredis.Redis, settings: Settings
) -> None:
    [job_id] = await settled_jobs(redis, settings, [BLOCKED])
    dead = DeadLetters.for_queue(redis, QUEUE)
    [row] = await dead.list()

    done = cli("dlq", "redrive", row.dead_id, "--queue", QUEUE, url=server.url)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Redriven {row.dead_id} -> ")
    assert (await JobQueue(redis, QUEUE).get(job_id)).state == "queued"
    assert await dead.count() == 0


async def test_dlq_purge_all_asks_first_and_deletes_nothing_on_no(
    server: EmbeddedServer, redis: aioredis.Redis, settings: Settings
) -> None:
    await settled_jobs(redis, settings, [BLOCKED, BLOCKED])
    dead = DeadLetters.for_queue(redis, QUEUE)

    declined = cli("dlq", "purge", "--all", "--queue", QUEUE, url=server.url, stdin="n\n")

    assert declined.returncode == 1
    assert "Purge all 2 dead letter(s)" in declined.stderr
    assert "error: purge cancelled; nothing was deleted" in declined.stderr
    assert await dead.count() == 2

    confirmed = cli("dlq", "purge", "--all", "--yes", "--queue", QUEUE, url=server.url)

    assert confirmed.stdout == f"Purged 2 dead letter(s) of topic jobs:{QUEUE}\n"
    assert await dead.count() == 0


async def test_dlq_purge_of_chosen_ids_keeps_the_others(
    server: EmbeddedServer, redis: aioredis.Redis, settings: Settings
) -> None:
    await settled_jobs(redis, settings, [BLOCKED, BLOCKED])
    dead = DeadLetters.for_queue(redis, QUEUE)
    first, second = await dead.list()

    done = cli("dlq", "purge", first.dead_id, "--topic", f"jobs:{QUEUE}", url=server.url)

    assert done.stdout == f"Purged 1 dead letter(s) of topic jobs:{QUEUE}\n", done.stderr
    assert [r.dead_id for r in await dead.list()] == [second.dead_id]


# ---------------------------------------------------------------- help

COMMANDS = [["jobs", "create"], ["jobs", "show"], ["jobs", "list"], ["dlq", "list"],
            ["dlq", "show"], ["dlq", "redrive"], ["dlq", "purge"], ["doctor"], ["jobs"], ["dlq"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])

    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"pipeline {command[0]}" in result.output.split("Example:", 1)[1]


def test_malformed_names_and_ids_are_usage_errors_exit_2(server: EmbeddedServer,
                                                         tmp_path: Path) -> None:
    bad = "bad q"
    calls: list[Call] = [
        (["jobs", "show", "nope"], None),
        (["jobs", "list", "--queue", ""], None),
        (["jobs", "create", "--queue", bad, "--file", jobs_file(tmp_path, [])], None),
        (["dlq", "list", "--queue", bad], None),
        (["worker", "agents.notifications", "--queue", bad], None),
    ]
    for (args, _), done in zip(calls, cli_many(calls, server.url), strict=True):
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: invalid "), (args, done.stderr)
