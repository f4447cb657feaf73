"""Real processes for the reservation tests: ``pipeline worker <spec>`` subprocesses (the
projector, the seat agent) and plain Python scripts, each logging to a file in the test's tmp
folder, killed at the end. Their output is part of every assertion message."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pipeline.testing import wait_for

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = Path(sys.executable).parent / "pipeline"

#: settings of every worker subprocess (as PIPELINE_* variables)
WORKER_SETTINGS: dict[str, object] = {
    "lease_ms": 1000,
    "block_ms": 100,
    "promote_interval_ms": 20,
    "shutdown_deadline_s": 10,
    "socket_timeout": 5,
    "log_format": "json",
    "log_level": "info",
}


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no settle."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The process's structured log lines (JSON), in order."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    @property
    def started(self) -> bool:
        """A worker running its loop (so SIGTERM is a graceful stop from now on)."""
        return any(e.get("event") == "worker_started" for e in self.events())


class Procs:
    """Starts subprocesses against one server; kills the leftovers on close."""

    #: PIPELINE_* settings of every worker; a subclass may change them
    settings: dict[str, object] = WORKER_SETTINGS

    def __init__(self, folder: Path, url: str) -> None:
        self.folder = folder
        self.url = url
        self.started: list[Proc] = []

    def _env(self, settings: dict[str, object], extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PIPELINE_") and k != "REDIS_URL"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["REDIS_URL"] = self.url
        env["PIPELINE_DATA_DIR"] = str(self.folder / "worker-data")
        for key, value in {**self.settings, **settings}.items():
            env[f"PIPELINE_{key.upper()}"] = str(value)
        env.update(extra)
        return env

    def _start(self, label: str, args: list[str], env: dict[str, str]) -> Proc:
        name = f"p{len(self.started) + 1}-{label}"
        log = self.folder / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def worker(self, spec: str, *args: str, env: dict[str, str] | None = None,
               **settings: object) -> Proc:
        """``pipeline worker <spec> <args>``."""
        return self._start(spec.rsplit(".", 1)[-1].replace(":", "-"),
                           [str(PIPELINE), "worker", spec, *args],
                           self._env(settings, env or {}))

    def script(self, label: str, path: Path, *args: str) -> Proc:
        """``python <path> <args>`` with the repository on the path."""
        return self._start(label, [sys.executable, str(path), *args], self._env({}, {}))

    def report(self) -> str:
        parts = []
        for p in self.started:
            code = p.popen.poll()
            state = "running" if code is None else f"exit code {code}"
            parts.append(f"----- {p.name} ({state}) {p.log}\n{p.output()[-4000:]}")
        return "\n".join(parts) or "(no processes started)"

    def close(self) -> None:
        for p in self.started:
            p.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the ready line of ``pipeline serve`` (its port)
READY = re.compile(r"Serving HTTP on http://127\.0\.0\.1:(\d+) ")


@dataclass
class Served:
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def port(self) -> int | None:
        m = READY.search(self.output())
        return int(m.group(1)) if m else None

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM: a graceful stop."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(30)


class Servers:
    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.redis_url = folder, url
        self.started: list[Served] = []

    def start(self, *args: str) -> Served:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PIPELINE_") and k != "REDIS_URL"}
        env.update(PYTHONUNBUFFERED="1", REDIS_URL=self.redis_url, PIPELINE_LOG_FORMAT="json",
                   PIPELINE_LEASE_MS="1000", PIPELINE_BLOCK_MS="100",
                   PIPELINE_DATA_DIR=str(self.folder / "data"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        log = self.folder / f"serve-{len(self.started) + 1}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen([str(PIPELINE), "serve", *(args or ("--port", "0"))],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        served = Served(popen, log)
        self.started.append(served)
        return served

    async def ready(self, served: Served) -> Served:
        def check() -> bool:
            if served.popen.poll() is not None:
                raise AssertionError(f"serve exited {served.popen.returncode}:\n"
                                     f"{served.output()}")
            return served.port is not None

        await wait_for(check, timeout=30, message="the server's ready line")
        return served

    def close(self) -> None:
        for s in self.started:
            if s.popen.poll() is None:
                s.popen.kill()
                s.popen.wait(10)
