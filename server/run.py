"""Blocking entry point: run a Publisher on its own event loop until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.sessions import SessionHost

from .config import ServerConfig
from .publisher import CLOSE_GOING_AWAY, Control, Publisher

log = logging.getLogger(__name__)

_STOP_POLL_S = 0.1


def run_server(bus: EventBus | None, hello: dict[str, Any], control: Control | None, config: ServerConfig, *,
               ready: threading.Event | None = None, stop: threading.Event | None = None,
               on_ready: Callable[[str], None] | None = None, sessions: SessionHost | None = None,
               first_client: threading.Event | None = None) -> int:
    """Serve ``bus``'s events (and client sessions on ``sessions``) until SIGINT/SIGTERM or
    until ``stop`` is set; block meanwhile.

    Creates a new asyncio event loop in the calling thread and runs a
    :class:`~wavlm_live.server.Publisher` on it. In the main thread SIGINT and SIGTERM
    stop the server (the previous handlers are restored on return); in any other thread
    no signal handler is installed and only ``stop`` ends it (checked every 0.1 s).
    On stop, every client gets what is already queued and then close code 1001.

    Args:
        bus, hello, control, config: as for :class:`~wavlm_live.server.Publisher`.
        sessions: shared models for client audio sessions (``None``: no sessions).
        first_client: set when the first client has connected.
        ready: set once the server listens.
        stop: set it from another thread to stop the server.
        on_ready: called once the server listens, in the server's thread, with its URL
            ``ws://host:port`` (the real port when ``config.port`` is 0; ``wss://`` when
            ``config.certfile`` serves TLS).

    Returns:
        0, the process exit code for a clean stop.

    Raises:
        OSError: the address cannot be bound (``ready`` is then never set).
        TypeError, ValueError: bad arguments (see Publisher), or a TLS certificate or
            key that cannot be loaded.
    """
    return asyncio.run(_serve(bus, hello, control, config, ready, stop, on_ready, sessions, first_client))


async def _serve(bus: EventBus | None, hello: dict[str, Any], control: Control | None, config: ServerConfig,
                 ready: threading.Event | None, stop: threading.Event | None,
                 on_ready: Callable[[str], None] | None, sessions: SessionHost | None,
                 first_client: threading.Event | None) -> int:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    signals: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, done.set)
                signals.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on POSIX
                pass
    publisher = Publisher(bus, hello, control, config, sessions=sessions, first_client=first_client)
    try:
        await publisher.start()
        if on_ready is not None:
            on_ready(publisher.url)
        if ready is not None:
            ready.set()
        while not done.is_set() and not (stop is not None and stop.is_set()):
            try:
                await asyncio.wait_for(done.wait(), _STOP_POLL_S)
            except TimeoutError:
                pass
        log.info("stopping the server")
    finally:
        await publisher.stop(CLOSE_GOING_AWAY)
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0
