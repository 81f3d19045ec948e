"""The dashboard app: a websocket client of a wavlm-live server, drawn with Textual.

The network runs in one async ``@work`` worker on the app's event loop: it connects with
an optional ``Authorization: Bearer`` token, subscribes, and feeds every decoded message
into :class:`~wavlm_live.tui.state.DashboardState` (plain state updates, no per-message
redraw). A timer redraws the widgets from the state every ``config.refresh_s`` seconds.
Losing the server never ends the app: the status bar shows the state and the worker
reconnects with exponential backoff; HTTP 401 (bad token), 403 (origin), 400 and a
refused TLS certificate stop it.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.reactive import reactive
from textual.widgets import Footer

from .screens import HelpScreen, RenameScreen
from .state import DashboardConfig, DashboardState, short_clock
from .widgets import (
    ActivityTimeline,
    Bar,
    CaptionLog,
    EngineInfo,
    SpeakersTable,
    caption_texts,
    fmt_number,
    level_meter,
    partial_text,
)

from wavlm_live.protocol import TOPICS, decode_message  # noqa: E402 - every topic (embeddings not requested)
from wavlm_live.tls import client_context, describe_tls_error  # noqa: E402

REFUSED = ("auth failed", "forbidden", "refused", "bad url", "tls refused")
"""Link states in which the worker stopped: retrying cannot help."""

YIELD_EVERY = 32
"""The network worker yields to the event loop after this many back-to-back messages,
so a burst never delays key presses."""


@dataclass(slots=True)
class Link:
    """Connection state shown in the status bar.

    Attributes:
        state: ``"connecting"``, ``"live"``, ``"reconnecting"``, or one of
            :data:`REFUSED` (``"auth failed"`` for HTTP 401, ``"forbidden"`` for 403,
            ``"refused"`` for 400, ``"bad url"``, ``"tls refused"`` for an untrusted
            server certificate), after which no retry is made.
        detail: why (last error), one short phrase.
        attempt: failed attempts since the last live connection.
        retry_at: ``time.monotonic()`` of the next attempt while reconnecting.
    """

    state: str = "connecting"
    detail: str = ""
    attempt: int = 0
    retry_at: float = 0.0


class DashboardApp(App[int]):
    """Live captions, speaker activity, speakers and engine health of a wavlm-live server.

    Args:
        url: websocket URL of the server, ``ws://host:port[/path]`` or ``wss://...``.
        token: bearer token sent in the ``Authorization`` header (never in the URL).
        transcript_path: where ``s`` saves the transcript; default
            ``wavlm-live-transcript-<YYYYmmdd-HHMMSS>.txt`` in the working directory.
        config: sizes, refresh period and reconnect backoff (:class:`DashboardConfig`).
        cafile: PEM of the CA (or the certificate) of a ``wss://`` server; default:
            the system's trust store.
        ssl: an ``ssl.SSLContext`` for ``wss://`` to use instead of ``cafile``'s.

    Raises:
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL with a host,
            ``token`` is empty or holds a line break, or ``cafile`` is given for a
            ``ws://`` URL or cannot be read.

    The app's return value (``App.return_value``) is 0 after a normal quit and 1 when it
    quit while the server refused it (a :data:`REFUSED` link state).
    """

    CSS_PATH = "dashboard.tcss"
    TITLE = "wavlm-live"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    paused: reactive[bool] = reactive(False, init=False)
    """Captions and timeline stop scrolling (data keeps arriving); ``space`` toggles it."""
    timestamps: reactive[bool] = reactive(False, init=False)
    """Stream times before each caption line; ``t`` toggles it."""

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("space", "pause", "Pause"),
        Binding("c", "clear", "Clear"),
        Binding("s", "save", "Save"),
        Binding("r", "rename", "Rename"),
        Binding("t", "timestamps", "Times"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        transcript_path: str | Path | None = None,
        config: DashboardConfig | None = None,
        session: str | None = None,
        cafile: str | None = None,
        ssl: Any = None,
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"url must be a ws:// or wss:// URL with a host, got {url!r}")
        if token is not None and (not isinstance(token, str) or not token or "\n" in token or "\r" in token):
            raise ValueError("token must be a non-empty single-line string")
        context = ssl if ssl is not None else client_context(url, cafile)
        super().__init__()
        self._ssl = context
        self.url = url
        self.config = config or DashboardConfig()
        self.transcript_path = Path(transcript_path) if transcript_path is not None else None
        self.state = DashboardState(self.config)
        self.link = Link()
        self.last_saved: Path | None = None
        """Where ``s`` last wrote the transcript."""
        self._token = token
        self.session = session
        """Client session watched instead of the server's own input (``None``: the input)."""
        self._ws: Any = None
        self._view_key: tuple | None = None
        self._rendered_total = 0
        self._partial_version = -1
        self._seen_errors = 0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        # The main screen's widgets are kept as attributes: while a modal screen is up,
        # query_one() would search the modal, and the refresh timer keeps running.
        self.top_bar = Bar(id="top")
        self.captions = CaptionLog(
            self.config.history, lambda e: caption_texts(self.state, e, self.timestamps), id="captions"
        )
        self.speakers_table = SpeakersTable(self.state, id="speakers")
        self.engine_info = EngineInfo(id="engine")
        self.timeline = ActivityTimeline(self.state, id="activity")
        self.stats_bar = Bar(id="stats")
        yield self.top_bar
        with Container(id="main"):
            with Vertical(id="captions-panel"):
                yield self.captions
            with Vertical(id="side"):
                yield self.speakers_table
                yield self.engine_info
        yield self.timeline
        yield self.stats_bar
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#captions-panel").border_title = "Captions"
        self.speakers_table.border_title = "Speakers"
        self.engine_info.border_title = "Engine"
        self.timeline.border_title = f"Speaker activity (last {self.config.window_s:g} s)"
        self.speakers_table.focus()
        self.refresh_view()
        self.set_interval(self.config.refresh_s, self.refresh_view)
        self.network()

    # ----------------------------------------------------------------- network
    @work(exclusive=True, group="network")
    async def network(self) -> None:
        """Connect, subscribe, ingest messages; reconnect with backoff when the link drops."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, InvalidURI

        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        delay = self.config.backoff_initial_s
        while True:
            self.link.state = "connecting" if self.link.attempt == 0 else "reconnecting"
            self.link.retry_at = 0.0
            try:
                async with connect(
                    self.url,
                    additional_headers=headers,
                    open_timeout=self.config.open_timeout_s,
                    max_queue=64,
                    ssl=self._ssl,
                ) as ws:
                    self._ws = ws
                    self.link = Link("live")
                    delay = self.config.backoff_initial_s
                    subscribe: dict[str, Any] = {"type": "subscribe", "topics": list(TOPICS), "embeddings": False}
                    if self.session is not None:
                        subscribe["session"] = self.session
                    await ws.send(json.dumps(subscribe))
                    burst = 0
                    async for raw in ws:
                        msg = decode_message(raw)
                        if msg is None:
                            self.state.bad_messages += 1
                            continue
                        self.state.ingest(msg)
                        burst += 1
                        if burst >= YIELD_EVERY:
                            burst = 0
                            await asyncio.sleep(0)
                reason = f": {ws.close_reason}" if ws.close_reason else ""
                detail = f"server closed the connection ({ws.close_code}{reason})"
            except InvalidStatus as exc:
                code = exc.response.status_code
                if code == 401:
                    self.link = Link("auth failed", "HTTP 401: check the token")
                    return
                if code == 403:
                    self.link = Link("forbidden", "HTTP 403: origin or client refused")
                    return
                if code == 400:
                    self.link = Link("refused", "HTTP 400: the server refused the request")
                    return
                detail = "HTTP 503: server full" if code == 503 else f"HTTP {code}"
            except InvalidURI as exc:
                self.link = Link("bad url", str(exc))
                return
            except ssl.SSLCertVerificationError as exc:
                self.link = Link("tls refused", describe_tls_error(exc) or str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - network or protocol failure: show it, retry
                detail = _reason(exc)
            finally:
                self._ws = None
            attempt = self.link.attempt + 1
            self.link = Link("reconnecting", detail, attempt, time.monotonic() + delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.backoff_max_s)

    async def _send(self, message: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(message))
        except Exception:  # noqa: BLE001 - the network worker notices and reconnects
            return False
        return True

    # ------------------------------------------------------------------- view
    def refresh_view(self) -> None:
        """Redraw the widgets from the state (called every ``config.refresh_s`` seconds)."""
        state = self.state
        log = self.captions
        log.follow = not self.paused
        if not self.paused:
            key = (state.captions_epoch, state.names_version, self.timestamps)
            new = state.finals_total - self._rendered_total
            if key != self._view_key or new >= log.max_entries:
                self._view_key = key
                log.set_entries(state.last_finals(log.max_entries), self._partial())
                self._partial_version = state.partial_version
            else:
                if new > 0:
                    log.append_entries(state.last_finals(new))
                if state.partial_version != self._partial_version:
                    self._partial_version = state.partial_version
                    log.set_partial(self._partial())
                log.catch_up()
            self._rendered_total = state.finals_total
        self.timeline.sync(self.paused)
        self.speakers_table.sync()
        if self.engine_info.display:
            self.engine_info.sync(state)
        self.top_bar.show(self._top_text())
        self.stats_bar.show(self._stats_text())
        if state.errors_total != self._seen_errors and state.error is not None:
            self._seen_errors = state.errors_total
            severity = "error" if state.error.fatal else "warning"
            self.notify(f"{state.error.code}: {state.error.message}", severity=severity)

    def _partial(self) -> Text | None:
        partial = self.state.partial
        return partial_text(self.state, partial, self.timestamps) if partial is not None else None

    def _top_text(self) -> Text:
        state, link = self.state, self.link
        out = Text(no_wrap=True, overflow="ellipsis")
        if link.state == "live" and state.ended is not None:
            out.append(f"■ ended at {short_clock(state.ended.t)}", style="bold")
        elif link.state == "live":
            out.append("● live", style="bold green")
        elif link.state == "connecting":
            out.append("◌ connecting…", style="bold yellow")
        elif link.state == "reconnecting":
            wait = max(0.0, link.retry_at - time.monotonic())
            when = f"in {math.ceil(wait)} s" if wait > 0 else "now"
            out.append(f"↻ reconnecting {when} (try {link.attempt + 1})", style="bold yellow")
            out.append(f" {link.detail}", style="yellow")
        else:
            out.append(f"✖ {link.state}", style="bold red")
            out.append(f" {link.detail}", style="red")
        if state.hello is not None and state.hello.get("demo"):
            out.append("  ")
            out.append(" DEMO MODELS ", style="bold black on yellow")
        out.append("  input ")
        level = state.level
        out.append_text(level_meter(level.rms_db if level else None, level.peak_db if level else None, 12))
        out.append(f" {fmt_number(level.rms_db, '5.1f')} dBFS" if level else "   — dBFS", style="" if level else "dim")
        if self.paused:
            out.append("  ")
            out.append(" PAUSED ", style="bold black on cyan")
        return out

    def _stats_text(self) -> Text:
        state = self.state
        out = Text(no_wrap=True, overflow="ellipsis")
        stats = state.stats
        if stats is None:
            out.append("RTF —  lag —", style="dim")
        else:
            out.append("RTF ")
            out.append(fmt_number(stats.rtf, ".2f"), style="bold red" if stats.rtf >= 1 else "bold")
            out.append(f"  lag {fmt_number(stats.lag, '.2f')}s")
            out.append(f"  skipped {stats.windows_skipped}", style="yellow" if stats.windows_skipped else "")
            out.append(f"  overflows {stats.input_overflows}", style="yellow" if stats.input_overflows else "")
        if state.dropped:
            out.append(f"  dropped {state.dropped}", style="yellow")
        if state.clients is not None:
            out.append(f"  clients {state.clients}")
        hello = state.hello
        if hello is not None:
            models = hello.get("models") or {}
            out.append("  │ ", style="dim")
            if hello.get("demo"):
                out.append("demo checkpoints (synthetic-speech models, not for human voices): ", style="yellow")
            out.append(", ".join(f"{task} {model}" for task, model in models.items()) or "no models", style="dim")
        return out

    # ---------------------------------------------------------------- actions
    def watch_paused(self) -> None:
        self.refresh_view()

    def watch_timestamps(self) -> None:
        self.refresh_view()

    def action_quit(self) -> None:
        """Quit; exit code 1 when the server refused us, else 0."""
        self.exit(1 if self.link.state in REFUSED else 0)

    def action_pause(self) -> None:
        """Pause or resume scrolling of captions and timeline (data keeps arriving)."""
        self.paused = not self.paused

    def action_clear(self) -> None:
        """Clear captions, partial and timeline (speakers stay)."""
        self.state.clear()
        self.refresh_view()

    def action_timestamps(self) -> None:
        """Show or hide stream timestamps before each caption line."""
        self.timestamps = not self.timestamps

    def action_help(self) -> None:
        """Show the key help and legend."""
        self.push_screen(HelpScreen(self.url, self.config.window_s))

    async def action_save(self) -> None:
        """Write the kept final captions with speakers and times to a text file, and the
        same captions as SRT and WebVTT subtitles (and the speaker turns as RTTM) beside
        it, with the writers ``transcribe`` uses."""
        path = self.transcript_path or Path.cwd() / time.strftime("wavlm-live-transcript-%Y%m%d-%H%M%S.txt")
        lines = self.state.transcript_lines()
        header = [f"# wavlm-live transcript from {self.url}", f"# saved {time.strftime('%Y-%m-%d %H:%M:%S')}"]
        hello = self.state.hello
        if hello is not None:
            header.append("# models: " + ", ".join(f"{k} {v}" for k, v in (hello.get("models") or {}).items()))
            if hello.get("demo"):
                header.append("# DEMO MODELS: trained on synthetic espeak-ng speech only; not recognition of human speech")
        text = "\n".join(header + lines) + "\n"
        # the writers are pure formatting (events in, text out): imported here so that the
        # dashboard's start-up loads nothing of the engine package
        from wavlm_live.engine.writers import ResultCollector  # noqa: PLC0415

        collector = ResultCollector()
        for event in [*self.state.speakers.values(), *self.state.finals]:
            collector(event)
        collector.turns.extend(self.state.turns)
        stem = path.with_suffix("")
        subtitles = {fmt: collector.contents(fmt, stem.name.replace(" ", "_") or "stream")
                     for fmt in ("srt", "vtt", "rttm") if fmt != "rttm" or collector.turns}

        def write() -> list[Path]:
            path.write_text(text, encoding="utf-8")
            written = [path]
            for fmt, content in subtitles.items():
                target = stem.with_name(f"{stem.name}.{fmt}")
                target.write_text(content, encoding="utf-8")
                written.append(target)
            return written

        try:
            written = await asyncio.to_thread(write)
        except OSError as exc:
            self.notify(f"could not save the transcript: {exc}", severity="error")
            return
        self.last_saved = path
        self.notify(f"saved {len(lines)} lines to {', '.join(p.name for p in written)} in {path.parent}",
                    title="Transcript")

    def action_rename(self) -> None:
        """Ask for a new name for the selected speaker and send it to the server."""
        speaker = self.speakers_table.selected_speaker
        if speaker is None:
            self.notify("no speaker to rename yet", severity="warning")
            return
        current = self.state.speakers.get(speaker)

        async def done(name: str | None) -> None:
            if not name:
                return
            if not await self._send({"type": "rename", "speaker": speaker, "name": name}):
                self.notify("not connected: rename not sent", severity="error")

        self.push_screen(RenameScreen(speaker, current.name if current else None), done)


def _reason(exc: BaseException) -> str:
    """A short phrase for why a connection failed or ended."""
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    elif (tls := describe_tls_error(exc)) is not None:
        text = tls
    elif isinstance(exc, ConnectionClosed):
        text = f"connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text if len(text) <= 60 else text[:59] + "…"


def run_dashboard(url: str, token: str | None = None, *, transcript_path: str | Path | None = None,
                  config: DashboardConfig | None = None, session: str | None = None,
                  cafile: str | None = None, ssl: Any = None) -> int:
    """Run the dashboard in the terminal until the user quits.

    Args:
        url: websocket URL (``ws://`` or ``wss://``) of a wavlm-live server.
        token: optional bearer token.
        session: watch this client session (read-only) instead of the server's input.
        transcript_path: file that ``s`` writes (see :class:`DashboardApp`).
        config: dashboard settings.
        cafile, ssl: the server's CA for ``wss://`` (see :class:`DashboardApp`).

    Returns:
        Process exit code: 0 after a normal quit, 1 when the server refused the
        dashboard (HTTP 401, 403 or 400, or its TLS certificate was refused) or the app
        failed, 2 for a bad ``url``, token or ``cafile``.
    """
    import sys

    try:
        app = DashboardApp(url, token=token, transcript_path=transcript_path, config=config, session=session,
                           cafile=cafile, ssl=ssl)
    except ValueError as exc:
        print(f"wavlm-live dashboard: {exc}", file=sys.stderr)
        return 2
    result = app.run()
    if app.return_code not in (None, 0):
        return app.return_code
    return result if isinstance(result, int) else 0


__all__ = ["DashboardApp", "DashboardConfig", "Link", "run_dashboard"]
