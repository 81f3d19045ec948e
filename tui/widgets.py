"""Widgets of the dashboard; each draws from :class:`~wavlm_live.tui.state.DashboardState`.

The app calls each widget's ``sync(state, ...)`` from a steady timer; a widget redraws only
when the state parts it shows changed (their version numbers), never once per message.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from wavlm_live.events import CaptionEvent

from .state import DashboardState, short_clock, speaker_runs

PALETTE = (
    "#4fc3f7",  # light blue
    "#ffb74d",  # orange
    "#81c784",  # green
    "#f06292",  # pink
    "#ba68c8",  # purple
    "#fff176",  # yellow
    "#4db6ac",  # teal
    "#e57373",  # red
)
"""Speaker colours, readable on dark and light backgrounds; S1 gets the first one."""

SELECTED_FOCUSED = "on #264f78"
SELECTED = "on grey23"
"""Backgrounds of the selected speaker row, with and without keyboard focus."""

LEVEL_FLOOR_DB = -60.0
"""Bottom of the input level meter in dBFS (0 dBFS is full scale)."""


def speaker_colour(speaker: str | None) -> str:
    """Stable colour of a speaker id: ``"S<n>"`` -> ``PALETTE[(n - 1) % 8]``; other ids
    by CRC-32 of the id; grey for ``None``."""
    if speaker is None:
        return "grey62"
    if speaker[:1] == "S" and speaker[1:].isdigit():
        index = int(speaker[1:]) - 1
    else:
        index = zlib.crc32(speaker.encode())
    return PALETTE[index % len(PALETTE)]


def caption_texts(state: DashboardState, event: CaptionEvent, timestamps: bool) -> list[Text]:
    """Lines for one final caption: one per speaker run, ``[M:SS.s] Name: WORDS`` in the
    speaker's colour."""
    lines = []
    for speaker, start, _end, words in speaker_runs(event):
        line = Text()
        if timestamps:
            line.append(f"[{short_clock(start)}] ", style="dim")
        colour = speaker_colour(speaker)
        line.append(f"{state.display_name(speaker)}: ", style=f"bold {colour}")
        line.append(words, style=colour)
        lines.append(line)
    return lines


def partial_text(state: DashboardState, event: CaptionEvent, timestamps: bool) -> Text:
    """The partial caption, dimmed and italic, after a ``…`` marker."""
    line = Text(style="dim italic")
    if timestamps:
        line.append(f"[{short_clock(event.start)}] ")
    line.append("… ")
    for speaker, _start, _end, words in speaker_runs(event):
        line.append(f"{state.display_name(speaker)}: ", style=speaker_colour(speaker))
        line.append(words + " ")
    line.rstrip()
    return line


class CaptionLog(ScrollView, can_focus=True):
    """Scrolling captions: final lines, newest at the bottom, then the dimmed partial.

    Holds at most ``max_entries`` items (final captions); ``format(item)`` turns one into
    its lines of text, which are wrapped to the widget width and re-wrapped when it
    changes. While ``follow`` is True the view sticks to the bottom; when False (paused)
    it stays where the user scrolled.

    Formatting and wrapping cost about 0.2 ms per caption, too much to redo a full pane
    in one frame on a busy machine (a resize, a timestamp toggle, a rename). So a full
    redraw formats and wraps only the newest captions that fill the view; the older ones
    are done ``WRAP_SLICE`` at a time by :meth:`catch_up` (called from the app's refresh
    timer) and put above them.
    """

    DEFAULT_CSS = """
    CaptionLog {
        overflow-y: scroll;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    """

    WRAP_SLICE = 10
    """Older captions formatted and wrapped per :meth:`catch_up` call."""

    def __init__(self, max_entries: int, format: Callable[[Any], list[Text]], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_entries = max_entries
        self.format = format
        self.follow = True
        self._items: deque[Any] = deque()
        self._pending = 0  # the oldest `_pending` items are not wrapped yet
        self._counts: deque[int] = deque()  # wrapped lines per wrapped item
        self._strips: list[Strip] = []
        self._plain: deque[list[str]] = deque()  # plain lines per wrapped item
        self._partial: Text | None = None
        self._partial_strips: list[Strip] = []
        self._width = 0
        self._style = Style()

    # The entry points used by the app.
    def set_entries(self, items: list[Any], partial: Text | None) -> None:
        """Replace everything: ``items`` are the final captions, oldest first."""
        self._items = deque(items[-self.max_entries :])
        self._partial = partial
        self._render_all()

    def append_entries(self, items: list[Any]) -> None:
        """Append new final captions at the bottom, dropping the oldest past the bound."""
        for item in items:
            self._items.append(item)
            if self._width:
                texts = self.format(item)
                strips = self._wrap(texts)
                self._counts.append(len(strips))
                self._plain.append([t.plain for t in texts])
                self._strips.extend(strips)
            else:
                self._pending += 1
        for _ in range(len(self._items) - self.max_entries):
            self._items.popleft()
            if self._pending:
                self._pending -= 1
            else:
                self._plain.popleft()
                del self._strips[: self._counts.popleft()]
        self._changed()

    def set_partial(self, partial: Text | None) -> None:
        """Show ``partial`` (dimmed text) after the finals, or nothing."""
        self._partial = partial
        self._partial_strips = self._wrap([partial]) if partial is not None and self._width else []
        self._changed()

    def catch_up(self) -> bool:
        """Format and wrap up to ``WRAP_SLICE`` older captions; True if any were."""
        if not self._pending or not self._width:
            return False
        added = self._wrap_older(self.WRAP_SLICE)
        if not self.follow:  # keep the lines the user is looking at in place
            self.scroll_to(y=self.scroll_offset.y + added, animate=False, immediate=True)
        self._changed()
        return True

    def _wrap_older(self, limit: int, lines: int | None = None) -> int:
        """Wrap pending items, newest first, until ``limit`` items (or ``lines`` lines)
        are done; returns the number of lines added at the top."""
        added: list[Strip] = []
        done = 0
        while self._pending and done < limit and (lines is None or len(added) < lines):
            self._pending -= 1
            texts = self.format(self._items[self._pending])
            strips = self._wrap(texts)
            self._counts.appendleft(len(strips))
            self._plain.appendleft([t.plain for t in texts])
            added[0:0] = strips
            done += 1
        self._strips[0:0] = added
        return len(added)

    @property
    def line_count(self) -> int:
        """Wrapped lines currently held (finals and partial)."""
        return len(self._strips) + len(self._partial_strips)

    @property
    def entry_count(self) -> int:
        """Final captions currently held (at most ``max_entries``)."""
        return len(self._items)

    @property
    def pending(self) -> int:
        """Held captions whose lines are not wrapped yet (see :meth:`catch_up`)."""
        return self._pending

    def plain_lines(self) -> list[str]:
        """The wrapped captions' lines as plain text (finals then partial), unwrapped."""
        out = [line for lines in self._plain for line in lines]
        if self._partial is not None:
            out.append(self._partial.plain)
        return out

    # Rendering.
    def _wrap(self, texts: list[Text]) -> list[Strip]:
        console: Console = self.app.console
        options = console.options.update_width(self._width)
        strips = []
        for text in texts:
            for line in console.render_lines(text, options, pad=False):
                strips.append(Strip(line, Segment.get_line_length(line)))
        return strips

    def _render_all(self) -> None:
        """Wrap the newest captions that fill the view; leave the rest to
        :meth:`catch_up`."""
        self._strips = []
        self._counts = deque()
        self._plain = deque()
        self._pending = len(self._items)
        self._partial_strips = []
        if self._width:
            if self._partial is not None:
                self._partial_strips = self._wrap([self._partial])
            self._wrap_older(len(self._items), lines=self.size.height + 1)
        self._changed()

    def _changed(self) -> None:
        self.virtual_size = Size(self._width, self.line_count)
        if self.follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._width = width
            self._render_all()

    def render_lines(self, crop: Region) -> list[Strip]:
        self._style = self.rich_style  # walks the DOM: once per render, not per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        style = self._style
        if index < len(self._strips):
            strip = self._strips[index]
        elif index - len(self._strips) < len(self._partial_strips):
            strip = self._partial_strips[index - len(self._strips)]
        else:
            return Strip.blank(width, style)
        return strip.crop_extend(0, width, style).apply_style(style)


class ActivityTimeline(Widget):
    """One row per speaker over the last ``window_s`` seconds of settled diarization.

    A cell is ``█`` when the speaker was active in at least half of its frames, ``▄``
    when in fewer; the ``overlap`` row marks cells with overlapping speech. The current
    speakers' labels are shown reversed with a ``▶``. At most ``MAX_ROWS`` speakers are
    drawn (the most recently seen ones, in id order).
    """

    DEFAULT_CSS = """
    ActivityTimeline { height: auto; }
    """

    MAX_ROWS = 6
    """Most speaker rows drawn."""

    def __init__(self, state: DashboardState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = state
        self._key: tuple | None = None
        self._row_count = -1

    def sync(self, paused: bool) -> None:
        """Redraw when the timeline or speaker names changed (not while paused); lay the
        screen out again only when the number of rows changed."""
        key = (self.state.timeline_version, self.state.speakers_version, self.size.width)
        if paused or key == self._key:
            return
        self._key = key
        rows = len(self._rows())
        self.refresh(layout=rows != self._row_count)
        self._row_count = rows

    def _rows(self) -> list[str]:
        state = self.state
        speakers = list(state.speakers)
        for labels in state.frames:  # speakers seen in labels before their speaker event
            for s in labels:
                if s not in state.speakers and s not in speakers:
                    speakers.append(s)
        if len(speakers) > self.MAX_ROWS:
            last = {s: (e.last_seen if (e := state.speakers.get(s)) else 0.0) for s in speakers}
            keep = set(sorted(speakers, key=lambda s: last[s])[-self.MAX_ROWS :])
            speakers = [s for s in speakers if s in keep]
        return speakers

    def render(self) -> Text:
        state = self.state
        speakers = self._rows()
        if not speakers:
            return Text("waiting for speech…", style="dim")
        label_w = min(12, max(len(state.display_name(s)) for s in speakers) + 2)
        label_w = max(label_w, 9)
        columns = max(1, self.size.width - label_w - 1)
        per, overlap, t_end = state.activity(columns, speakers)
        current = state.current_speakers()
        out = Text(no_wrap=True, overflow="crop")
        for s in speakers:
            colour = speaker_colour(s)
            name = state.display_name(s)[: label_w - 2]
            if s in current:
                out.append(f"▶ {name}".ljust(label_w), style=Style.parse(f"bold reverse {colour}"))
            else:
                out.append(f"  {name}".ljust(label_w), style=colour)
            out.append(" ")
            out.append("".join(_cell(f) for f in per[s]), style=colour)
            out.append("\n")
        if len(speakers) > 1:
            out.append("  overlap".ljust(label_w) + " ", style="dim")
            out.append("".join("━" if f > 0 else " " for f in overlap), style="bold yellow")
            out.append("\n")
        out.append(" " * (label_w + 1))
        out.append(_axis(columns, state.config.window_s, t_end), style="dim")
        return out


def _cell(fraction: float) -> str:
    if fraction >= 0.5:
        return "█"
    return "▄" if fraction > 0 else " "


def _axis(columns: int, window_s: float, t_end: float) -> str:
    """A time axis under the timeline: ``─`` with ``M:SS`` labels every 5 or 10 s."""
    dt = window_s / columns
    step = 10.0 if columns * 10 / window_s >= 12 else 15.0
    if columns * 5 / window_s >= 16:
        step = 5.0
    axis = ["─"] * columns
    t_start = t_end - window_s
    first = int(t_start // step + 1) * step
    t = first
    while t <= t_end + 1e-9:
        col = int(round((t - t_start) / dt)) - 1
        label = "┴" + short_clock(t).split(".")[0]
        if t >= 0 and 0 <= col and col + len(label) <= columns:
            axis[col : col + len(label)] = list(label)
        t += step
    return "".join(axis)


class SpeakersTable(Widget, can_focus=True):
    """Tracked speakers: colour, id, name, talk time and share, turns, last seen and the
    cosine similarity of the latest x-vector to the speaker's centroid.

    One row per speaker in order of first appearance; ``↑``/``↓`` (or a click) select a
    row, the selected speaker is the one ``r`` renames. Current speakers are bold. Drawn
    as one Rich text (cheaper to redraw several times a second than a DataTable).
    """

    DEFAULT_CSS = """
    SpeakersTable { height: auto; }
    """

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("home", "move(-1000000)", "First", show=False),
        Binding("end", "move(1000000)", "Last", show=False),
    ]

    HEADER = ("", "ID", "Name", "Talk", "Share", "Turns", "Last", "Sim")
    WIDTHS = (1, 4, 12, 7, 5, 5, 9, 5)
    RIGHT = (False, False, False, True, True, True, True, True)

    def __init__(self, state: DashboardState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = state
        self.selected = 0
        self._key: tuple | None = None
        self._ids: list[str] = []
        self._cells: dict[str, tuple[str, ...]] = {}
        self._current: set[str] = set()

    @property
    def row_count(self) -> int:
        """Number of speaker rows."""
        return len(self._ids)

    @property
    def selected_speaker(self) -> str | None:
        """Id of the selected speaker, or ``None`` when the table is empty."""
        return self._ids[self.selected] if self._ids else None

    def cells(self, speaker: str) -> tuple[str, ...]:
        """The texts of ``speaker``'s row, in :attr:`HEADER` order (swatch first).

        Raises:
            KeyError: no row for ``speaker``.
        """
        return self._cells[speaker]

    def action_move(self, step: int) -> None:
        """Move the selection by ``step`` rows (clamped)."""
        if self._ids:
            self.selected = max(0, min(len(self._ids) - 1, self.selected + step))
            self.refresh()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and 1 <= offset.y <= len(self._ids):
            self.selected = offset.y - 1
            self.refresh()

    @property
    def _labelled(self) -> bool:
        """Whether the table has the Class column (the server runs classification)."""
        hello = self.state.hello or {}
        return "classification" in (hello.get("tasks") or ())

    def sync(self) -> None:
        """Recompute the rows when speakers, names, classes or settled time changed."""
        state = self.state
        key = (state.speakers_version, state.timeline_version, state.classes_version, self._labelled)
        if key == self._key:
            return
        self._key = key
        total = sum(e.talk_time for e in state.speakers.values() if math.isfinite(e.talk_time)) or 1.0
        seen = [e.last_seen for e in state.speakers.values() if math.isfinite(e.last_seen)]
        now = max([state.frames_end, *seen])
        cells: dict[str, tuple[str, ...]] = {}
        for sid, e in state.speakers.items():
            ago = now - e.last_seen
            cells[sid] = (
                "■",
                sid,
                e.name or "—",
                _duration(e.talk_time),
                f"{100 * e.talk_time / total:.0f}%" if math.isfinite(e.talk_time) else "—",
                str(e.turns),
                "now" if ago < 1.0 else f"{_duration(ago)} ago",
                "—" if e.similarity is None or not math.isfinite(e.similarity) else f"{e.similarity:.2f}",
            )
            if self._labelled:
                latest = state.classes.get(sid)
                best = latest.labels[0] if latest is not None else None
                cells[sid] += ("—" if best is None else f"{best.label} {100 * best.score:.0f}%",)
        selected = self.selected_speaker
        self._ids = list(cells)
        self._cells = cells
        self._current = state.current_speakers()
        if selected in cells:
            self.selected = self._ids.index(selected)
        else:
            self.selected = min(self.selected, max(0, len(self._ids) - 1))
        self.refresh(layout=len(self._ids) != getattr(self, "_row_count", -1))
        self._row_count = len(self._ids)

    def _row(self, texts: tuple[str, ...]) -> list[str]:
        out = []
        widths, right_aligned = self.WIDTHS, self.RIGHT
        if len(texts) > len(widths):  # the Class column
            widths, right_aligned = widths + (10,), right_aligned + (False,)
        for text, width, right in zip(texts, widths, right_aligned, strict=True):
            if len(text) > width:
                text = text[: width - 1] + "…"
            out.append(text.rjust(width) if right else text.ljust(width))
        return out

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        header = self.HEADER + (("Class",) if self._labelled else ())
        out.append("  ".join(self._row(header)), style="bold")
        if not self._ids:
            out.append("\nno speakers yet", style="dim")
        for i, sid in enumerate(self._ids):
            out.append("\n")
            colour = speaker_colour(sid)
            bold = "bold " if sid in self._current else ""
            line = Text(no_wrap=True)
            for j, text in enumerate(self._row(self._cells[sid])):
                if j:
                    line.append("  ")
                style = colour if j == 0 else bold + colour if j == 1 else bold.strip()
                if j in (2, 8) and self._cells[sid][j] == "—":
                    style = "dim"
                line.append(text, style=style)
            if i == self.selected:
                line.stylize(SELECTED_FOCUSED if self.has_focus else SELECTED)
            out.append_text(line)
        return out

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def _duration(seconds: float) -> str:
    """``12.3s`` under a minute, ``M:SS`` under an hour, else ``H:MM:SS``; ``—`` for NaN."""
    if not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def level_meter(rms_db: float | None, peak_db: float | None, width: int) -> Text:
    """A ``width``-cell bar of the RMS level from :data:`LEVEL_FLOOR_DB` to 0 dBFS, with
    a ``│`` at the peak; green, yellow above -12 dBFS, red above -3 dBFS."""
    bar = Text()
    if rms_db is None or not math.isfinite(rms_db):
        return Text("·" * width, style="dim")
    if peak_db is not None and not math.isfinite(peak_db):
        peak_db = None

    def cells(db: float) -> int:
        return round(width * min(1.0, max(0.0, (db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB)))

    filled = cells(rms_db)
    peak = min(width - 1, cells(peak_db)) if peak_db is not None and peak_db > LEVEL_FLOOR_DB else -1
    for i in range(width):
        db = LEVEL_FLOOR_DB + (i + 1) * -LEVEL_FLOOR_DB / width
        colour = "red" if db > -3 else "yellow" if db > -12 else "green"
        if i < filled:
            bar.append("█", style=colour)
        elif i == peak:
            bar.append("│", style=colour)
        else:
            bar.append("·", style="dim")
    return bar


class Bar(Static):
    """A one-line bar that is updated only when its text changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._last: tuple | None = None

    @property
    def plain(self) -> str:
        """The text shown, without styles."""
        return self._last[0] if self._last is not None else ""

    def show(self, text: Text) -> None:
        """Display ``text`` unless it is what is already shown. The bar's size does not
        depend on its text (fixed in CSS), so no new layout is needed."""
        key = (text.plain, tuple(text.spans))
        if key != self._last:
            self._last = key
            self.update(text, layout=False)


class EngineInfo(Bar):
    """Models, stream geometry, engine health and link counters, one fact per line (shown
    only where the terminal is wide enough)."""

    def sync(self, state: DashboardState) -> None:
        """Redraw from ``state`` if anything shown changed."""
        out = Text(no_wrap=True, overflow="ellipsis")
        hello = state.hello or {}
        models = hello.get("models") if isinstance(hello.get("models"), dict) else {}
        width = max((len(str(task)) for task in models), default=0)
        out.append("Models\n", style="bold")
        for task, model in models.items():
            out.append(f"  {str(task).ljust(width)}  {model}\n")
        if isinstance(hello.get("captions_decoder"), str):
            out.append(f"  captions decoded by {hello['captions_decoder']}\n", style="dim")
        if not models:
            out.append("  waiting for the server's hello\n", style="dim")
        if hello.get("demo"):
            out.append("  DEMO checkpoints: trained on synthetic espeak-ng speech\n"
                       "  only; on human voices the output is not meaningful.\n", style="bold yellow")
        out.append("Stream\n", style="bold")
        out.append(f"  received      {short_clock(state.stream_time)}\n")
        out.append(f"  settled       {short_clock(state.frames_end)}\n")
        if hello:
            out.append(f"  window / hop  {fmt_number(hello.get('window'))} s / {fmt_number(hello.get('hop'))} s\n")
            out.append(f"  sample rate   {hello.get('sample_rate', '?')} Hz, server {hello.get('version', '?')}\n")
        stats = state.stats
        out.append("Engine\n", style="bold")
        if stats is None:
            out.append("  no stats yet\n", style="dim")
        else:
            out.append(f"  windows       {stats.windows_analysed} analysed, {stats.windows_skipped} skipped\n")
            out.append(f"  RTF / lag     {fmt_number(stats.rtf, '.2f')} / {fmt_number(stats.lag, '.2f')} s\n")
            out.append(f"  input         {stats.input_overflows} overflows, {stats.samples_sanitised} "
                       f"samples sanitised, {stats.ring_overwrites} ring overwrites\n")
        if state.classes or state.keywords:
            out.append("Classification\n", style="bold")
            for sid, event in state.classes.items():
                labels = ", ".join(f"{x.label} {100 * x.score:.0f}%" for x in event.labels)
                out.append(f"  {state.display_name(sid)}: {labels}\n")
            if state.keywords:
                out.append("  keywords " + ", ".join(
                    f"{e.labels[0].label}@{short_clock(e.start)}" for e in list(state.keywords)[-6:]) + "\n")
        out.append("Link\n", style="bold")
        clients = "?" if state.clients is None else str(state.clients)
        out.append(f"  clients {clients}, dropped {state.dropped}, bad messages {state.bad_messages}, "
                   f"errors {state.errors_total}")
        if state.error is not None:
            out.append(f"\n  last error    {state.error.code}: {state.error.message}", style="red")
        self.show(out)


def fmt_number(value: object, spec: str = "g") -> str:
    """Format a number from the server, ``—`` for anything else (NaN included)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return format(value, spec)
    return "—"
