"""Connection state lines, settings resolution, and finding agents by name."""

from __future__ import annotations

import io

import pytest

from pipeline.agent import Agent
from pipeline.connection import ConnectionState, resolve
from pipeline.errors import ConfigError
from pipeline.registry import load_agent
from pipeline.settings import Settings


def test_the_connection_state_prints_the_seed_lines_once_per_change():
    out = io.StringIO()
    state = ConnectionState(echo=out)
    state.up()
    state.up()
    state.down(ConnectionError("Connection refused"))
    state.down(ConnectionError("Connection refused again"))
    state.up()
    assert out.getvalue().splitlines() == [
        "Redis client connected to the server",
        "Redis client not connected to the server: Connection refused",
        "Redis client connected to the server",
    ]


def test_redis_url_wins_over_the_embedded_server(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    endpoint = resolve(Settings(data_dir=tmp_path))
    assert endpoint.url == "redis://127.0.0.1:1/0" and endpoint.embedded is None
    assert not any(tmp_path.iterdir()), "no embedded server may start when REDIS_URL is set"


def test_a_malformed_redis_url_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="must start with redis://"):
        resolve(Settings(redis_url="localhost:6379", data_dir=tmp_path))


def test_agents_are_found_by_dotted_path_and_options_applied():
    agent = load_agent("agents.notifications", queue="push_notification_code_3", concurrency=7)
    assert isinstance(agent, Agent)
    assert agent.topic == "jobs:push_notification_code_3"
    assert agent.concurrency == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("agents.nope", "cannot import agent module"),
        ("agents.notifications:missing", "has no attribute"),
        ("agents.notifications:BLACKLIST", "neither an Agent"),
    ],
)
def test_a_bad_agent_name_is_a_clear_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_agent(spec)


def test_an_unknown_agent_option_is_a_clear_error():
    with pytest.raises(ConfigError, match="does not take option"):
        load_agent("agents.notifications", colour="blue")


def test_a_server_that_is_not_redis_is_a_clear_one_line_error(tmp_path):
    import socket
    import subprocess
    import sys
    import threading
    from pathlib import Path

    http = socket.socket()
    http.bind(("127.0.0.1", 0))
    http.listen()

    def answer_as_http() -> None:
        while True:
            try:
                conn, _ = http.accept()
            except OSError:
                return
            with conn:
                conn.recv(1000)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer_as_http, daemon=True).start()
    url = f"redis://127.0.0.1:{http.getsockname()[1]}/0"
    try:
        done = subprocess.run([str(Path(sys.executable).parent / "pipeline"), "--redis-url", url,
                               "status"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
    finally:
        http.close()
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {url} does not answer as a Redis server does: ")
    assert len(done.stderr.splitlines()) == 1
