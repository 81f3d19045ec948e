"""What the dashboard knows about the stream, built from server messages; no Textual here.

:class:`DashboardState` ingests the decoded JSON messages of the wavlm-live websocket
protocol (``docs/protocol.md``) one at a time and keeps bounded state for the widgets to
draw: final captions and the partial tail, the settled diarization labels of the last
``window_s`` seconds, the tracked speakers, the latest level and stats, and the hello.
Every part carries a version number that changes when it changes, so the UI can redraw at
a steady rate and only what changed.

All times are seconds of stream time (see :mod:`wavlm_live.events`), never wall clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any

from wavlm_live.events import (
    CaptionEvent,
    ClassificationEvent,
    DiarizationEvent,
    EndEvent,
    ErrorEvent,
    Event,
    LevelEvent,
    SpeakerEvent,
    StatsEvent,
    Word,
    event_from_dict,
)
from wavlm_live.protocol import PROTOCOL_VERSION, TOPICS
from wavlm_live.text import join_words

KEYWORD_LOG = 20
"""Keyword detections kept for the dashboard's keyword log."""
KEYWORD_MARKERS = ("_silence_", "_unknown_")
"""Keyword-spotting classes that are not keywords (Speech Commands' silence and unknown)."""

CURRENT_S = 0.5
"""A speaker active in the last ``CURRENT_S`` seconds of settled frames is "current"."""

NEW_STREAM_S = 1.0
"""Stream time going back by more than this many seconds means the server restarted its
stream (a reconnect to a new run): the stream state is reset."""


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Settings of the dashboard (all optional).

    Attributes:
        history: final caption segments shown in the captions pane (older ones scroll
            out); bounds the cost of redrawing it (formatting and wrapping take about
            0.2 ms per segment).
        transcript: final caption segments kept for the saved transcript; older ones are
            dropped. Both bounds hold under any event rate.
        window_s: seconds of settled diarization shown by the activity timeline.
        refresh_s: period in seconds of the UI refresh from state (not once per message).
        backoff_initial_s: first reconnect delay in seconds; doubled after every failed
            attempt up to ``backoff_max_s``, reset once a connection is live.
        backoff_max_s: longest reconnect delay in seconds.
        open_timeout_s: seconds allowed for the TCP + websocket handshake.
    """

    history: int = 200
    transcript: int = 5000
    window_s: float = 30.0
    refresh_s: float = 0.2
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    open_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        """Raises ``TypeError`` for a value of the wrong type, ``ValueError`` for one out
        of range; both name the field."""
        for name in ("history", "transcript"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name in ("window_s", "refresh_s", "backoff_initial_s", "backoff_max_s", "open_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) is below backoff_initial_s ({self.backoff_initial_s})"
            )


class DashboardState:
    """Bounded dashboard state fed by :meth:`ingest` (single-threaded: the UI loop).

    Args:
        config: sizes of the bounded parts (``transcript``, ``window_s``).

    Attributes (read by the widgets):
        hello: the latest ``hello`` message (dict) or ``None``.
        finals: the last ``config.transcript`` final :class:`CaptionEvent`s, oldest first.
        finals_total: number of finals ever appended (lets a view append only new ones).
        captions_epoch: changes when ``finals`` is cleared or the stream restarts.
        partial: the current partial caption (always after the last final) or ``None``.
        speakers: tracked speakers by id, in order of first appearance.
        names_version: changes when a speaker's display name changes.
        frames: settled per-frame speaker labels, newest last, at most ``window_s`` long.
        frames_end: stream time in seconds after the newest settled frame.
        frame: frame duration in seconds (0.02 until a diarization event says otherwise).
        level, stats: latest :class:`LevelEvent` / :class:`StatsEvent` or ``None``.
        clients: connected clients reported by the server with ``stats``, or ``None``.
        error: latest :class:`ErrorEvent` or ``None``; ended: the :class:`EndEvent` or ``None``.
        dropped: messages the server reports it dropped for us (``dropped`` messages).
        bad_messages: messages that could not be decoded (ignored).
        version: changes on every ingested message that changed anything.
    """

    def __init__(self, config: DashboardConfig | None = None) -> None:
        self.config = config or DashboardConfig()
        self.hello: dict[str, Any] | None = None
        self.finals: deque[CaptionEvent] = deque(maxlen=self.config.transcript)
        self.finals_total = 0
        self.captions_epoch = 0
        self.partial: CaptionEvent | None = None
        self.partial_version = 0
        self.last_segment = -1
        self.speakers: dict[str, SpeakerEvent] = {}
        self.speakers_version = 0
        self.names_version = 0
        self.frame = 0.02
        self.frames: deque[tuple[str, ...]] = deque(maxlen=self._frames_max())
        self.frames_end = 0.0
        self.timeline_version = 0
        self.level: LevelEvent | None = None
        self.stats: StatsEvent | None = None
        self.clients: int | None = None
        self.error: ErrorEvent | None = None
        self.errors_total = 0
        self.ended: EndEvent | None = None
        self.turns: deque = deque(maxlen=self.config.transcript * 4)
        """Speaker turns received (for the RTTM that ``s`` saves), oldest first."""
        self.classes: dict[str, ClassificationEvent] = {}
        """Latest turn classification per speaker id."""
        self.keywords: deque[ClassificationEvent] = deque(maxlen=KEYWORD_LOG)
        """Recent window classifications whose best class is a keyword (not a silence or
        unknown marker), oldest first."""
        self.classes_version = 0
        self.dropped = 0
        self.bad_messages = 0
        self.stream_time = 0.0
        self.version = 0
        self._resync = False
        self._snapshot: list[Event] = []

    def _frames_max(self) -> int:
        return max(1, math.ceil(self.config.window_s / self.frame))

    # ------------------------------------------------------------------ ingest
    def ingest(self, msg: Any) -> None:
        """Apply one decoded server message.

        Unknown types are ignored (forward compatibility); a message that is not a dict
        or whose event fields are invalid is counted in ``bad_messages`` and ignored.
        Never raises on server input.
        """
        if not isinstance(msg, dict):
            self.bad_messages += 1
            return
        kind = msg.get("type")
        if kind == "hello":
            restarted = self.hello is not None and msg.get("stream") != self.hello.get("stream")
            if restarted:  # another server process (or a restarted one): a new stream
                self.reset_stream()
            self._resync = self.hello is not None and not restarted  # a reconnect: check the snapshot
            self._snapshot = []
            self.hello = msg
        elif kind == "dropped":
            # The server counts what it dropped for us (its seq gaps are not a count:
            # a message dropped before it was queued never had a seq).
            count = msg.get("count")
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                self.dropped += count
        elif kind in TOPICS:
            event = decode_event(msg)
            if event is None:
                self.bad_messages += 1
                return
            if kind == "stats":
                clients = msg.get("clients")
                self.clients = clients if isinstance(clients, int) else None
            if self._resync:
                self._check_snapshot(event, msg.get("snapshot") is True)
            self._apply(event)
        else:
            return
        self.version += 1

    def _check_snapshot(self, event: Event, snapshot: bool) -> None:
        """After a reconnect, tell from the server's snapshot whether it streams what we
        saw before (the same stream: repeats are skipped) or a new stream (a restarted
        server): then forget the old stream and keep the snapshot received so far.

        A new stream shows as a known speaker with another ``first_seen`` or less talk
        time, a kept final caption whose segment number now has other text or times, or
        another end time. (Level and stats times going back also tell, later.)"""
        if not snapshot:
            self._resync = False
            self._snapshot = []
            return
        if self._differs(event):
            replay = self._snapshot
            self.reset_stream()
            for old in replay:
                self._apply(old)
        self._snapshot.append(event)

    def _differs(self, event: Event) -> bool:
        if isinstance(event, SpeakerEvent):
            known = self.speakers.get(event.id)
            return known is not None and (
                not math.isclose(known.first_seen, event.first_seen, abs_tol=1e-3)
                or event.talk_time < known.talk_time - 1e-3
            )
        if isinstance(event, CaptionEvent) and event.final and event.segment <= self.last_segment:
            kept = next((e for e in reversed(self.finals) if e.segment == event.segment), None)
            return kept is not None and (kept.start, kept.text) != (event.start, event.text)
        if isinstance(event, EndEvent):
            return self.ended is not None and not math.isclose(self.ended.t, event.t, abs_tol=1e-3)
        return False

    def _apply(self, event: Any) -> None:
        if isinstance(event, CaptionEvent):
            self._caption(event)
        elif isinstance(event, DiarizationEvent):
            self._diarization(event)
        elif isinstance(event, SpeakerEvent):
            self._speaker(event)
        elif isinstance(event, LevelEvent):
            self._advance(event.t)
            self.level = event
        elif isinstance(event, StatsEvent):
            self._advance(event.t)
            self.stats = event
        elif isinstance(event, ClassificationEvent):
            self._classification(event)
        elif isinstance(event, ErrorEvent):
            self.error = event
            self.errors_total += 1
        elif isinstance(event, EndEvent):
            self.ended = event

    def _classification(self, event: ClassificationEvent) -> None:
        if not event.labels:
            return
        if event.scope == "turn" and event.speaker is not None:
            self.classes[event.speaker] = event
        elif event.scope == "window" and event.labels[0].label not in KEYWORD_MARKERS:
            if not self.keywords or self.keywords[-1].start < event.start:
                self.keywords.append(event)
        else:
            return
        self.classes_version += 1

    def _advance(self, t: float) -> None:
        """Track the stream time of received audio (from ``level`` and ``stats``, which
        do not lag like settled results); a clear step back means a new stream."""
        if t < self.stream_time - NEW_STREAM_S:
            self.reset_stream()
        self.stream_time = max(self.stream_time, t)

    def _caption(self, event: CaptionEvent) -> None:
        if event.final:
            if event.segment <= self.last_segment:
                return  # already have it (snapshot after a reconnect)
            self.last_segment = event.segment
            if event.text:
                self.finals.append(event)
                self.finals_total += 1
            if self.partial is not None and self.partial.segment <= event.segment:
                self.partial = None
                self.partial_version += 1
        else:
            if event.segment <= self.last_segment:
                return  # stale partial of a segment that is already final
            self.partial = event if event.text else None
            self.partial_version += 1

    def _diarization(self, event: DiarizationEvent) -> None:
        self.turns.extend(event.turns)  # diarization messages are never repeated in a snapshot
        if event.frame > 0 and not math.isclose(event.frame, self.frame):
            self.frame = event.frame
            self.frames = deque(maxlen=self._frames_max())
            self.frames_end = event.start
        labels = event.labels
        if not self.frames:
            self.frames_end = event.start
        if event.start < self.frames_end - 1e-6:
            skip = round((self.frames_end - event.start) / self.frame)
            labels = labels[skip:]  # already have these frames (snapshot, duplicate)
            if not labels:
                return
        elif event.start > self.frames_end + 1e-6:
            gap = round((event.start - self.frames_end) / self.frame)  # lost messages
            self.frames.extend(() for _ in range(min(gap, self.frames.maxlen or gap)))
        self.frames.extend(labels)
        self.frames_end = event.end
        self.timeline_version += 1

    def _speaker(self, event: SpeakerEvent) -> None:
        old = self.speakers.get(event.id)
        if old is not None and old.name != event.name:
            self.names_version += 1
        self.speakers[event.id] = event
        self.speakers_version += 1

    # ---------------------------------------------------------------- actions
    def clear(self) -> None:
        """Forget captions (display and transcript) and the activity timeline; speakers,
        level and stats stay (they are the server's running state)."""
        self.finals.clear()
        self.partial = None
        self.partial_version += 1
        self.captions_epoch += 1
        self.frames.clear()
        self.timeline_version += 1
        self.version += 1

    def reset_stream(self) -> None:
        """Forget everything about the current stream (the server started a new one)."""
        self.clear()
        self.last_segment = -1
        self.speakers.clear()
        self.speakers_version += 1
        self.names_version += 1
        self.classes.clear()
        self.keywords.clear()
        self.turns.clear()
        self.classes_version += 1
        self.frames_end = 0.0
        self.stream_time = 0.0
        self.level = self.stats = None
        self.error = self.ended = None

    # ---------------------------------------------------------------- queries
    def display_name(self, speaker: str | None) -> str:
        """The speaker's name, else its id; ``"?"`` for ``None`` (nobody active)."""
        if speaker is None:
            return "?"
        event = self.speakers.get(speaker)
        return event.name if event is not None and event.name else speaker

    def current_speakers(self) -> set[str]:
        """Speakers active in the last :data:`CURRENT_S` seconds of settled frames."""
        n = max(1, round(CURRENT_S / self.frame))
        current: set[str] = set()
        for i in range(max(0, len(self.frames) - n), len(self.frames)):
            current.update(self.frames[i])
        return current

    def activity(self, columns: int, speakers: list[str]) -> tuple[dict[str, list[float]], list[float], float]:
        """Fraction of each column's settled frames where each speaker was active.

        The last ``config.window_s`` seconds before ``frames_end`` are split into
        ``columns`` cells of ``window_s / columns`` seconds, aligned to multiples of the
        cell duration so cells do not shimmer as time advances.

        Returns:
            ``(per_speaker, overlap, t_end)``: per speaker, ``columns`` fractions in
            [0, 1]; per column, the fraction of frames with two or more speakers active;
            ``t_end`` the stream time in seconds at the right edge of the last column.
        """
        if columns <= 0:
            raise ValueError(f"columns must be positive, got {columns}")
        dt = self.config.window_s / columns
        t_end = math.ceil(self.frames_end / dt - 1e-9) * dt
        t_start = t_end - columns * dt
        per: dict[str, list[float]] = {s: [0.0] * columns for s in speakers}
        overlap = [0.0] * columns
        counts = [0] * columns
        first = self.frames_end - len(self.frames) * self.frame
        for i, labels in enumerate(self.frames):
            centre = first + (i + 0.5) * self.frame
            col = math.floor((centre - t_start) / dt)
            if not 0 <= col < columns:
                continue
            counts[col] += 1
            for s in labels:
                row = per.get(s)
                if row is not None:
                    row[col] += 1
            if len(labels) > 1:
                overlap[col] += 1
        for col, n in enumerate(counts):
            if n:
                for row in per.values():
                    row[col] /= n
                overlap[col] /= n
        return per, overlap, t_end

    def last_finals(self, n: int) -> list[CaptionEvent]:
        """The newest ``n`` (or fewer) kept final captions, oldest first."""
        return list(islice(reversed(self.finals), n))[::-1]

    def transcript_lines(self) -> list[str]:
        """The kept final captions as text lines, one per speaker run within a segment:
        ``[H:MM:SS.ss - H:MM:SS.ss] Name (S1): TEXT`` (``Name (S1)`` is just ``S1`` when
        unnamed, ``?`` when no speaker was active)."""
        lines = []
        for event in self.finals:
            for speaker, start, end, text in speaker_runs(event):
                who = self.display_name(speaker)
                if speaker is not None and who != speaker:
                    who = f"{who} ({speaker})"
                lines.append(f"[{clock(start)} - {clock(end)}] {who}: {text}")
        return lines


_NUMBER = (int, float)


def _ok(value: Any, annotation: str) -> bool:
    """Whether a decoded field value fits its dataclass annotation (as a string)."""
    optional = annotation.endswith("| None")
    if value is None:
        return optional
    base = annotation.removesuffix("| None").strip()
    if base == "float":
        return isinstance(value, _NUMBER) and not isinstance(value, bool)
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "str":
        return isinstance(value, str)
    if base == "bool":
        return isinstance(value, bool)
    return True  # tuples: checked element-wise below


def decode_event(msg: dict[str, Any]) -> Event | None:
    """Rebuild an engine event from a server message, checking every field's type so
    that bad server input can never break the drawing code.

    Float fields sent as ``null`` (non-finite on the server) become NaN. Speaker events
    are built here directly because ``event_from_dict`` reads their integer ``turns``
    as a list of :class:`~wavlm_live.events.Turn`.

    Returns:
        the event, or ``None`` when the message is malformed.
    """
    try:
        if msg.get("type") == "speaker":
            if msg.get("v") != PROTOCOL_VERSION:
                return None
            names = {f.name for f in dataclasses.fields(SpeakerEvent)}
            event: Event = SpeakerEvent(**{k: v for k, v in msg.items() if k in names})
        else:
            event = event_from_dict(msg)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    changes = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        annotation = str(f.type)
        if value is None and annotation == "float":
            changes[f.name] = math.nan
        elif not _ok(value, annotation):
            return None
    if isinstance(event, CaptionEvent):
        for w in event.words:
            if not (isinstance(w, Word) and _ok(w.text, "str") and _ok(w.start, "float")
                    and _ok(w.end, "float") and _ok(w.speaker, "str | None")):
                return None
    elif isinstance(event, DiarizationEvent):
        if not all(isinstance(s, str) for labels in event.labels for s in labels):
            return None
        if not (math.isfinite(event.start) and math.isfinite(event.end) and event.frame > 0):
            return None
    elif isinstance(event, SpeakerEvent) and event.embedding is not None:
        if not isinstance(event.embedding, (list, tuple)):
            return None
    return dataclasses.replace(event, **changes) if changes else event


def speaker_runs(event: CaptionEvent) -> list[tuple[str | None, float, float, str]]:
    """Split a caption into runs of consecutive words by the same speaker.

    Returns:
        ``[(speaker, start_s, end_s, text), ...]``; one run with the caption's own speaker
        and text when it has no word timings.
    """
    if not event.words:
        return [(event.speaker, event.start, event.end, event.text)] if event.text else []
    runs: list[tuple[str | None, float, float, str]] = []
    words: list[str] = []
    speaker = event.words[0].speaker
    start = event.words[0].start
    end = start
    for word in event.words:
        if word.speaker != speaker and words:
            runs.append((speaker, start, end, join_words(words)))
            words, speaker, start = [], word.speaker, word.start
        words.append(word.text)
        end = word.end
    runs.append((speaker, start, end, join_words(words)))  # no space between Chinese / Japanese characters
    return runs


def clock(t: float) -> str:
    """Stream time in seconds as ``H:MM:SS.ss`` (e.g. 83.456 -> ``0:01:23.46``)."""
    t = round(max(0.0, t), 2)
    hours, rest = divmod(t, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{seconds:05.2f}"


def short_clock(t: float) -> str:
    """Stream time in seconds as ``M:SS.s`` (``H:MM:SS`` past an hour)."""
    t = round(max(0.0, t), 1)
    if t >= 3600:
        hours, rest = divmod(int(t), 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    minutes, seconds = divmod(t, 60)
    return f"{int(minutes)}:{seconds:04.1f}"
