"""Fault suite fixtures: real ``wavlm-live serve`` processes (the installed command line,
or ``_faulty.py`` for one injected fault) on ephemeral ports, real websocket clients.

Every test here starts processes, so the whole directory is marked slow.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
CLI = Path(sys.executable).with_name("wavlm-live")
FAULTY = HERE / "_faulty.py"
CONVERSATION = HERE.parents[1] / "wavlm_live" / "data" / "demo" / "conversation.flac"
URL_LINE = re.compile(r" on (ws://[0-9.]+:[0-9]+)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


class Served:
    """A running ``serve`` process: its URL, its stderr lines (read by a thread)."""

    def __init__(self, args: list[str], fault: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 120.0) -> None:
        cmd = [str(CLI), *args] if fault is None else [sys.executable, str(FAULTY), fault, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.kill()
            raise AssertionError(f"server did not start: {self.stderr}")
        if not self.url:
            raise AssertionError(f"server exited early ({self.proc.wait()}): {self.stderr}")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            found = URL_LINE.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        time.sleep(0.1)  # the reader thread takes the last lines
        return code

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        time.sleep(0.1)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def serve():
    """``serve(*args, fault=None, env=None)`` starts a server; all are killed at the end."""
    started: list[Served] = []

    def start(*args: str, fault: str | None = None, env: dict[str, str] | None = None) -> Served:
        server = Served(["serve", "--port", "0", *args], fault=fault, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


async def recv(ws: ClientConnection, timeout: float = 30.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: ClientConnection, pred: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Messages up to and including the first one for which ``pred`` is true."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        out.append(msg)
        if pred(msg):
            return out


async def client(url: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 10)
    return await connect(url, **kwargs)


@pytest.fixture
def net() -> Any:
    """The client helpers above (conftest modules are not importable by name)."""

    class Net:
        recv = staticmethod(recv)
        until = staticmethod(until)
        client = staticmethod(client)
        CONVERSATION = CONVERSATION
        DATA = DATA
        CLI = CLI

    return Net
