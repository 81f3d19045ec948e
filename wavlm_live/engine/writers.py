"""Result files: JSONL event logs, SRT/WebVTT captions, RTTM diarization and plain text.

:class:`ResultCollector` gathers final captions, turns and speaker names from events (of a
live run, an offline run or a JSON Lines log read back) and writes the four text formats;
``transcribe`` and ``convert`` both use it, so the same events give the same files.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wavlm_live.events import PROTOCOL_VERSION, CaptionEvent, DiarizationEvent, Event, SpeakerEvent, Turn, Word
from wavlm_live.text import display_width, join_words


def jsonl_header(description: dict[str, Any], source: str) -> dict[str, Any]:
    """The first line of a JSON Lines event file: ``{"type": "header", "v": 1}``, the
    stream description (an engine's ``hello()``: version, sample rate, frame, tasks,
    models, window, hop...), the ``source`` analysed and ``started`` (unix seconds).
    Schema: ``JSONL_SCHEMAS["header"]`` in ``wavlm_live.server.schemas``."""
    return {"type": "header", "v": PROTOCOL_VERSION, **description, "source": source, "started": round(time.time(), 3)}


class JsonlWriter:
    """Event bus subscriber that writes one JSON object per event and line.

    The first line is ``header`` (see :func:`jsonl_header`) when one is given; each other
    line is :meth:`Event.to_dict` plus nothing else (the JSON Lines format of
    docs/protocol.md: the message schemas without the websocket envelope). Lines are
    flushed as they are written, so a crash loses at most the event being written. Usable
    as ``bus.subscribe(writer)``; thread-safe.

    Args:
        stream: a text stream opened for writing (the caller closes it).
        types: event types to write (``None``: all); the SpeakerEvent embedding is
            written only when ``embeddings`` is True.
        header: the header line's object, written at once.
    """

    def __init__(self, stream: IO[str], types: set[str] | None = None, embeddings: bool = False,
                 header: dict[str, Any] | None = None) -> None:
        self.stream = stream
        self.types = types
        self.embeddings = embeddings
        self._lock = threading.Lock()
        if header is not None:
            self.stream.write(json.dumps(header, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        if self.types is not None and event.TYPE not in self.types:
            return
        data = event.to_dict()
        if not self.embeddings:
            data.pop("embedding", None)
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


SUBTITLE_FORMATS = ("srt", "vtt", "rttm", "txt")
"""Formats :meth:`ResultCollector.write` writes (``jsonl`` is written while a run goes)."""

MAX_LABEL_CHARS = 20
"""Longest speaker label an SRT cue line starts with (with ``": "``): longer names are
cut to 19 characters and "…", so a label never takes more than 22 of a 42-character
line. WebVTT voice spans carry the whole name."""


def output_path(stem: Path, fmt: str) -> Path:
    """``stem`` plus ``"." + fmt``, appended (``meeting.day1`` -> ``meeting.day1.srt``;
    ``Path.with_suffix`` would replace ``.day1``)."""
    stem = Path(stem)
    return stem.with_name(f"{stem.name}.{fmt}")


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: the words ``text`` shown from ``start`` to ``end`` seconds,
    spoken by ``speaker`` (an id such as ``"S1"``, or ``None``) whose display ``label``
    is its name, else its id."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    label: str | None = None

    @property
    def srt_label(self) -> str | None:
        """The label as an SRT cue starts with it: at most :data:`MAX_LABEL_CHARS`."""
        if self.label is None:
            return None
        return self.label if len(self.label) <= MAX_LABEL_CHARS else self.label[: MAX_LABEL_CHARS - 1] + "…"


def group_cues(
    words: list[Word],
    *,
    max_chars: int = 42,
    max_seconds: float = 6.0,
    max_pause: float = 1.0,
    names: dict[str, str] | None = None,
) -> list[Cue]:
    """Group final caption words into one-line subtitle cues.

    A new cue starts at a speaker change, after a pause longer than ``max_pause`` seconds,
    or when the line would exceed ``max_chars`` display cells or the cue ``max_seconds``
    seconds (the usual one-line subtitle limits, e.g. the BBC subtitle guidelines'
    ~37-42 characters; a Chinese or Japanese character counts two cells, so a line holds
    up to ~21 of them). Words are joined as :func:`wavlm_live.text.join_words` does (no
    space between two Chinese / Japanese characters). The line is ``"LABEL: WORDS"`` when
    the cue has a speaker (label: its name from ``names``, else its id, shortened as
    :attr:`Cue.srt_label` says), and the label counts towards ``max_chars``; only a single
    word longer than the line can exceed it.
    """
    names = names or {}
    cues: list[Cue] = []
    current: list[Word] = []

    def label_of(speaker: str | None) -> str | None:
        return None if speaker is None else (names.get(speaker) or speaker)

    def prefix_chars(speaker: str | None) -> int:
        label = Cue(0.0, 0.0, "", speaker, label_of(speaker)).srt_label
        return 0 if label is None else display_width(label) + 2

    def flush() -> None:
        if current:
            speaker = current[0].speaker
            text = join_words(w.text for w in current)
            cues.append(Cue(current[0].start, current[-1].end, text, speaker, label_of(speaker)))
            current.clear()

    for w in words:
        if current:
            length = prefix_chars(current[0].speaker) + display_width(join_words([*(x.text for x in current), w.text]))
            if (
                w.speaker != current[0].speaker
                or w.start - current[-1].end > max_pause
                or length > max_chars
                or w.end - current[0].start > max_seconds
            ):
                flush()
        current.append(w)
    flush()
    return cues


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


_SRT_MARKUP = str.maketrans({"<": "‹", ">": "›", "{": "❴", "}": "❵"})


def srt_text(text: str) -> str:
    """``text`` safe for a SubRip cue. SubRip has no escape syntax, and its readers take
    ``<...>`` for HTML-style tags (ffmpeg and pysrt drop an unknown ``<Who>``) and
    ``{...}`` for ASS override blocks (ffmpeg passes them to libass, which hides them),
    so those four characters become the look-alikes ‹ › ❴ ❵ (U+2039, U+203A, U+2774,
    U+2775)."""
    return text.translate(_SRT_MARKUP)


def vtt_text(text: str) -> str:
    """``text`` escaped for a WebVTT cue payload: ``&``, ``<`` and ``>`` as the named
    character references ``&amp;``, ``&lt;``, ``&gt;`` (W3C WebVTT, "cue text"; also keeps
    ``-->`` out of the payload)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_VTT_ANNOTATION = str.maketrans({c: f"&#{ord(c)};" for c in "&<>{}"})


def vtt_annotation(name: str) -> str:
    """``name`` escaped for the annotation of a WebVTT voice span ``<v NAME>``: ``&``,
    ``<``, ``>``, ``{`` and ``}`` as numeric character references (``&#38;`` ...). The
    annotation may hold neither a raw ``&`` nor ``>`` (W3C WebVTT); the other three and
    the numeric form are for ffmpeg's WebVTT decoder, which ends a tag at ``{``, ``}``
    or a named reference and would show the rest of the name as text."""
    return name.translate(_VTT_ANNOTATION)


def format_srt(cues: list[Cue]) -> str:
    """SubRip text: numbered cues with ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` times, each one
    line ``LABEL: WORDS`` (:func:`srt_text`-escaped; LABEL as :attr:`Cue.srt_label`)."""
    blocks = []
    for i, c in enumerate(cues, 1):
        line = srt_text(c.text if c.srt_label is None else f"{c.srt_label}: {c.text}")
        blocks.append(f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{line}\n")
    return "\n".join(blocks)


def format_vtt(cues: list[Cue]) -> str:
    """WebVTT text (W3C WebVTT): header, then cues with ``HH:MM:SS.mmm`` times; a cue with
    a speaker is one voice span ``<v LABEL>WORDS`` whose annotation is the whole label
    (the same name the SRT file shows, uncut), escaped by :func:`vtt_annotation`, and
    whose words are escaped by :func:`vtt_text`."""
    out = ["WEBVTT", ""]
    for c in cues:
        text = vtt_text(c.text)
        if c.label is not None:
            text = f"<v {vtt_annotation(c.label)}>{text}"
        out += [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}", text, ""]
    return "\n".join(out)


def format_rttm(turns: Iterable[Turn | tuple[float, float, str]], file_id: str) -> str:
    """NIST RTTM lines, one ``SPEAKER`` line per turn, sorted by start time then speaker:
    ``SPEAKER <file> 1 <onset> <duration> <NA> <NA> <speaker> <NA> <NA>`` (seconds, 3
    decimals). The one RTTM writer of the project (results, the synthetic corpus).

    Args:
        turns: :class:`~wavlm_live.events.Turn` objects or ``(start s, end s, speaker)``
            tuples.
        file_id: the RTTM file field.

    Raises:
        ValueError: ``file_id`` or a speaker label is empty or contains whitespace, or a
            turn ends before it starts.
    """
    if not file_id or any(ch.isspace() for ch in file_id):
        raise ValueError(f"RTTM file id must be non-empty without whitespace, got {file_id!r}")
    rows = []
    for t in turns:
        start, end, speaker = (t.start, t.end, t.speaker) if isinstance(t, Turn) else t
        if not speaker or any(ch.isspace() for ch in str(speaker)):
            raise ValueError(f"RTTM speaker label must be non-empty without whitespace, got {speaker!r}")
        if end < start:
            raise ValueError(f"turn of {speaker} ends at {end} s, before its start at {start} s")
        rows.append((float(start), float(end), str(speaker)))
    lines = [
        f"SPEAKER {file_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"
        for start, end, speaker in sorted(rows, key=lambda r: (r[0], r[2]))
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def write_rttm(path: str | os.PathLike[str], file_id: str, turns: Iterable[Turn | tuple[float, float, str]]) -> None:
    """Write :func:`format_rttm` of ``turns`` to ``path`` (UTF-8). Raises as it does."""
    Path(path).write_text(format_rttm(turns, file_id), encoding="utf-8")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``path.part`` and a rename, so that a
    failure never leaves a half-written file in place of a good one."""
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ResultCollector:
    """Event bus subscriber that keeps final caption words, speaker turns and speaker
    names for :func:`format_srt`, :func:`format_vtt` and :func:`format_rttm` at the end
    of a run (the latest name of each speaker applies to all its cues). Thread-safe."""

    def __init__(self) -> None:
        self.words: list[Word] = []
        self.turns: list[Turn] = []
        self.names: dict[str, str] = {}
        self.text_segments: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, CaptionEvent) and event.final:
                self.words.extend(event.words)
                self.text_segments.append(event.text)
            elif isinstance(event, DiarizationEvent):
                self.turns.extend(event.turns)
            elif isinstance(event, SpeakerEvent):
                if event.name:
                    self.names[event.id] = event.name
                else:
                    self.names.pop(event.id, None)  # a rename that cleared the name

    @property
    def transcript(self) -> str:
        """All final caption text, segments joined by single spaces (none between two
        Chinese / Japanese characters, :func:`wavlm_live.text.join_words`)."""
        return join_words(self.text_segments)

    def contents(self, fmt: str, file_id: str) -> str:
        """The text of one of :data:`SUBTITLE_FORMATS` (``file_id``: RTTM's file field).

        Raises:
            ValueError: an unknown format or a bad ``file_id``.
        """
        if fmt == "srt":
            return format_srt(group_cues(self.words, names=self.names))
        if fmt == "vtt":
            return format_vtt(group_cues(self.words, names=self.names))
        if fmt == "rttm":
            return format_rttm(self.turns, file_id)
        if fmt == "txt":
            return self.transcript + "\n"
        raise ValueError(f"unknown result format {fmt!r}; choose from {', '.join(SUBTITLE_FORMATS)}")

    def write(self, stem: Path, file_id: str, formats: set[str]) -> list[Path]:
        """Write ``STEM.srt``/``.vtt``/``.rttm``/``.txt`` (:func:`output_path`) for the
        requested ``formats`` (subset of :data:`SUBTITLE_FORMATS`), each atomically;
        returns the paths. Existing files are replaced: callers check first.

        Raises:
            ValueError: an unknown format or a bad ``file_id``.
            OSError: a file cannot be written.
        """
        written = []
        for fmt in sorted(formats):
            path = output_path(stem, fmt)
            write_atomically(path, self.contents(fmt, file_id))
            written.append(path)
        return written
