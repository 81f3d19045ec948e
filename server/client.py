"""``listen``: the example subscriber behind ``wavlm-live listen URL``."""

from __future__ import annotations

import json
import shutil
import ssl as _ssl
import sys
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from wavlm_live.protocol import TOPICS, decode_message
from wavlm_live.tls import client_context, describe_tls_error

DEFAULT_TOPICS = ("caption", "speaker", "error", "end")

_STATUS_HINTS = {
    400: "the server refused the request (is the token in the URL? use --token)",
    401: "authentication failed: missing or wrong token",
    403: "this origin is not allowed by the server",
    503: "the server is full or shutting down; try again later",
}


def _clock(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.2f}"


class Printer:
    """Turns server messages into lines; keeps speaker names for caption labels."""

    def __init__(self, print_fn: Callable[..., Any], partials: bool) -> None:
        self.print = print_fn
        self.partials = partials
        self.names: dict[str, str | None] = {}
        self.joined: set[str] = set()
        self.partial_shown = False

    def label(self, speaker: str | None) -> str:
        if speaker is None:
            return ""
        name = self.names.get(speaker)
        return f"{speaker} ({name}): " if name else f"{speaker}: "

    def line(self, text: str) -> None:
        if self.partial_shown:
            self.print("\r\x1b[2K", end="", flush=True)
            self.partial_shown = False
        self.print(text)

    def handle(self, msg: dict[str, Any]) -> bool:
        """Print ``msg``; returns True when the stream ended."""
        kind = msg.get("type")
        if kind == "hello":
            tasks = ", ".join(msg.get("tasks", [])) or "no tasks"
            self.line(f"connected to wavlm-live {msg.get('version', '?')} ({tasks})")
            if isinstance(msg.get("captions_decoder"), str):
                self.line(f"captions decoded by {msg['captions_decoder']}")
            if msg.get("demo"):
                self.line("warning: demo models, trained on synthetic speech only; on human voices their output is not meaningful")
        elif kind == "caption":
            head = f"[{_clock(msg['start'])}-{_clock(msg['end'])}] {self.label(msg.get('speaker'))}"
            if msg["final"]:
                if msg["text"]:
                    self.line(head + msg["text"])
            elif self.partials and msg["text"]:
                width = max(20, shutil.get_terminal_size().columns - 1)
                text = head + msg["text"] + " ..."
                if len(text) > width:
                    text = "..." + text[-(width - 3):]
                self.print("\r\x1b[2K" + text, end="", flush=True)
                self.partial_shown = True
        elif kind == "speaker":
            sid, name = msg["id"], msg.get("name")
            if sid not in self.joined:
                # A speaker exists before it has spoken (an enrolled voice, or an
                # x-vector whose frames have not settled yet): its first_seen is not a
                # time yet. Announce it when it has talk time.
                if (msg.get("talk_time") or 0) > 0:
                    named = f" ({name})" if name else ""
                    self.line(f"{sid}{named} joined at {_clock(msg['first_seen'])} s")
                    self.joined.add(sid)
            elif self.names.get(sid) != name:
                self.line(f'{sid} is now "{name}"' if name else f"{sid} has no name now")
            self.names[sid] = name
        elif kind == "error":
            prefix = "fatal error" if msg.get("fatal") else "error"
            self.line(f"{prefix} ({msg.get('code')}): {msg.get('message')}")
        elif kind == "dropped":
            types = ", ".join(f"{n} {t}" for t, n in sorted(msg.get("types", {}).items()))
            self.line(f"(missed {msg.get('count')} messages: {types})")
        elif kind == "end":
            self.line(f"stream ended at {_clock(msg.get('t'))} s")
            return True
        return False


async def listen(url: str, *, token: str | None = None, topics: Iterable[str] | None = None,
                 print_fn: Callable[..., Any] = print, partials: bool | None = None,
                 cafile: str | None = None, ssl: _ssl.SSLContext | None = None) -> int:
    """Connect to a wavlm-live server and print what it publishes until the stream ends.

    Prints final captions as ``[12.34-15.60] S1 (Alice): TEXT``, speaker joins and
    renames, errors, and missed-message notices. Partial captions are shown on one
    rewritten line (``\\r``) when ``partials`` is true; by default only when printing to
    a terminal with the builtin ``print``.

    Args:
        url: ``ws://host:port`` (or ``wss://``) of the server.
        token: bearer token, sent in the ``Authorization`` header (never in the URL).
        topics: topics to subscribe to (default caption, speaker, error, end).
        print_fn: called like ``print`` (``end``/``flush`` keywords for partials).
        partials: show partial captions; ``None`` decides as described above.
        cafile: PEM of the CA (or the certificate) of a ``wss://`` server; default: the
            system's trust store.
        ssl: an ``ssl.SSLContext`` for ``wss://`` to use instead of ``cafile``'s.

    Returns:
        0 when the stream ended or the server closed normally (1000/1001); 1 when the
        connection failed, was refused (HTTP 400/401/403/503, an untrusted TLS
        certificate) or was dropped; 2 for a bad URL, topic or ``cafile``. Failures are
        printed as one line, never a traceback.
    """
    chosen = list(DEFAULT_TOPICS if topics is None else topics)
    unknown = [t for t in chosen if t not in TOPICS]
    if unknown:
        print_fn(f"unknown topic(s) {', '.join(unknown)}; topics are {', '.join(TOPICS)}")
        return 2
    if partials is None:
        partials = print_fn is print and sys.stdout.isatty()
    printer = Printer(print_fn, partials)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        context = ssl if ssl is not None else client_context(url, cafile)
    except ValueError as exc:
        print_fn(str(exc))
        return 2
    try:
        async with connect(url, additional_headers=headers, compression=None,
                           max_size=2**22, open_timeout=10, ssl=context) as ws:
            await ws.send(json.dumps({"type": "subscribe", "topics": chosen}))
            async for raw in ws:
                msg = decode_message(raw)
                if msg is not None and printer.handle(msg):
                    return 0
            going_away = ws.close_code == 1001
        printer.line("server closed the connection" + (" (shutting down)" if going_away else ""))
        return 0
    except InvalidURI:
        print_fn(f"not a websocket URL: {url!r} (expected ws://host:port or wss://host:port)")
        return 2
    except InvalidStatus as exc:
        status = exc.response.status_code
        hint = _STATUS_HINTS.get(status, "the server refused the connection")
        print_fn(f"cannot connect to {url}: HTTP {status}: {hint}")
        return 1
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code in (1000, 1001):
            printer.line("server closed the connection" + (" (shutting down)" if code == 1001 else ""))
            return 0
        reason = exc.rcvd.reason if exc.rcvd is not None and exc.rcvd.reason else "connection lost"
        printer.line(f"disconnected by {url}: {reason} (code {code if code is not None else 1006})")
        return 1
    except ConnectionRefusedError:
        print_fn(f"cannot connect to {url}: connection refused (is the server running?)")
        return 1
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        detail = describe_tls_error(exc, url) or (exc.strerror if isinstance(exc, OSError) and exc.strerror
                                                   else str(exc) or type(exc).__name__)
        print_fn(f"cannot connect to {url}: {detail}")
        return 1
