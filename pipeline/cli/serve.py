"""``pipeline serve``: the HTTP API (the seed's routes, ``/v1``, ``/metrics``) under uvicorn.

It stops gracefully (lifespan shutdown, exit 0) on SIGTERM/SIGINT, on the seed's
``KILL_SERVER`` published on the control channel ``pl:control``, and on a ``pipeline control
drain`` or ``stop`` for every group (``pipeline.serve_stop.stop_requested``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Annotated

import typer

from pipeline.cli.common import connect, fail, keep_running_without_stdout, run
from pipeline.cli.shape import OneLineCommand, prepare
from pipeline.connection import keep_embedded
from pipeline.errors import ConfigError
from pipeline.logging import get_logger
from pipeline.serve_stop import stop_requested

#: the longest a graceful stop waits for responses still being sent
GRACEFUL_S = 10
READY_LINE = "Serving HTTP on http://{host}:{port} (Ctrl-C to stop)"
#: how long start-up waits for the control listeners before serving anyway
CONTROL_READY_S = 5.0

log = get_logger("pipeline.cli.serve")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound now so that a taken port is a one-line error, and port 0
    picks a free one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; "
                          "pick another with --port") from None
    sock.setblocking(False)
    return sock


def _check_seat_agent(spec: str) -> None:
    """A usage error now (exit 2), not a 500 at the first /process: the agent must load
    and consume the seat queue."""
    from pipeline.keys import job_topic
    from pipeline.registry import load_agent
    from pipeline.reservations import SEAT_QUEUE

    try:
        agent = load_agent(spec)
    except ConfigError as exc:
        raise fail(f"--seat-agent: {exc}", 2) from None
    if agent.topic != job_topic(SEAT_QUEUE):
        raise fail(f"--seat-agent {spec} consumes {agent.topic}, not the seat queue "
                   f"{job_topic(SEAT_QUEUE)}", 2)


def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")
                    ] = 1245,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    seat_agent: Annotated[str, typer.Option(
        help="Agent that /process runs over the reserve_seat queue.")] = "agents.reservations",
) -> None:
    """Serve the seed's six routes (byte-exact), /v1, /metrics and /openapi.json.

    Start-up never resets stock or seats: they survive a restart.

    SIGTERM or Ctrl-C stops gracefully (exit 0), as do `pipeline publish pl:control
    KILL_SERVER` and `pipeline control drain` or `stop` without --group.

    Example: pipeline serve --port 1245
    """
    import uvicorn

    from pipeline.api import create_app
    from pipeline.api.state import Api

    s = prepare(ctx)
    _check_seat_agent(seat_agent)
    keep_running_without_stdout()  # a closed stdout must not fail /process's seat jobs

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # a signal is a graceful stop here: exit 0

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # open event streams (a dashboard) end first: uvicorn waits for every response
            Api.of_app(self.config.app).closing.set()
            await super().shutdown(sockets)

    async def body() -> int:
        try:
            sock = listen(host, port)
        except ConfigError as exc:
            raise fail(str(exc), 2) from None  # as a taken --metrics-port of a worker
        bound_port = sock.getsockname()[1]  # now: uvicorn closes the socket when it stops
        endpoint, redis = await connect(s)
        keeper = asyncio.create_task(keep_embedded(endpoint))  # outlive the server's owner
        try:
            app = create_app(redis, s, seat_agent=seat_agent)
            config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                    server_header=False, date_header=True,
                                    timeout_graceful_shutdown=GRACEFUL_S)
            server = Server(config)
            listening = asyncio.Event()
            control = asyncio.create_task(stop_requested(
                redis, block_ms=s.effective_block_ms, ready=listening))

            def told_to_stop(done: asyncio.Task[str]) -> None:
                if not done.cancelled() and done.exception() is None:
                    log.info("serve_stopping", reason=done.result())
                    server.should_exit = True
                elif not done.cancelled():
                    log.error("control_listener_failed", error=repr(done.exception()))

            control.add_done_callback(told_to_stop)
            with contextlib.suppress(TimeoutError):
                # a KILL_SERVER sent right after the ready line must be heard
                await asyncio.wait_for(listening.wait(), CONTROL_READY_S)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                while not server.started and not task.done():
                    await asyncio.sleep(0.01)
                if server.started and not server.should_exit:
                    print(READY_LINE.format(host=host, port=bound_port), flush=True)
                await task
            finally:
                if not task.done():  # we are failing or cancelled: stop it, boundedly
                    server.should_exit = True
                    await asyncio.wait({task}, timeout=GRACEFUL_S + 5)
                    task.cancel()
                control.cancel()
                await asyncio.gather(control, return_exceptions=True)
            return 0 if server.started else 1
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            sock.close()
            await redis.aclose()

    raise typer.Exit(run(body))


def register(app: typer.Typer) -> None:
    """Add ``pipeline serve`` to ``app``."""
    app.command("serve", cls=OneLineCommand)(serve)
