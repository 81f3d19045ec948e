"""Result files: JSONL event logs, SRT/WebVTT captions and RTTM diarization."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from wavlm_live.events import CaptionEvent, DiarizationEvent, Event, Turn, Word
from wavlm_live.text import display_width, join_words


class JsonlWriter:
    """Event bus subscriber that writes one JSON object per event and line.

    Each line is :meth:`Event.to_dict` plus nothing else; lines are flushed as they are
    written so a crash loses at most the event being written. Usable as
    ``bus.subscribe(writer)``; thread-safe.

    Args:
        stream: a text stream opened for writing (the caller closes it).
        types: event types to write (``None``: all); the SpeakerEvent embedding is
            written only when ``embeddings`` is True.
    """

    def __init__(self, stream: IO[str], types: set[str] | None = None, embeddings: bool = False) -> None:
        self.stream = stream
        self.types = types
        self.embeddings = embeddings
        self._lock = threading.Lock()

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


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: ``text`` shown from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str
    speaker: str | None = None


def group_cues(
    words: list[Word],
    *,
    max_chars: int = 42,
    max_seconds: float = 6.0,
    max_pause: float = 1.0,
    names: dict[str, str] | None = None,
) -> list[Cue]:
    """Group final caption words into subtitle cues.

    A new cue starts at a speaker change, after a pause longer than ``max_pause`` seconds,
    or when the cue would exceed ``max_chars`` display cells or ``max_seconds`` seconds (the
    usual one-line subtitle limits, e.g. the BBC subtitle guidelines' ~37-42 characters; a
    Chinese or Japanese character counts two cells, so a cue holds up to ~21 of them). Words
    are joined as :func:`wavlm_live.text.join_words` does (no space between two Chinese /
    Japanese characters). A cue's text is prefixed ``"S1: "`` (or the speaker's name) when
    it has a speaker.
    """
    names = names or {}
    cues: list[Cue] = []
    current: list[Word] = []

    def flush() -> None:
        if current:
            speaker = current[0].speaker
            text = join_words(w.text for w in current)
            if speaker is not None:
                text = f"{names.get(speaker) or speaker}: {text}"
            cues.append(Cue(current[0].start, current[-1].end, text, speaker))
            current.clear()

    for w in words:
        if current:
            length = display_width(join_words([*(x.text for x in current), w.text]))
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


def format_srt(cues: list[Cue]) -> str:
    """SubRip text: numbered cues with ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` times."""
    blocks = [f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n" for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def format_vtt(cues: list[Cue]) -> str:
    """WebVTT text (W3C WebVTT): header, then cues with ``HH:MM:SS.mmm`` times and a
    ``<v speaker>`` voice span when the cue has a speaker."""
    out = ["WEBVTT", ""]
    for c in cues:
        text = c.text
        if c.speaker is not None:
            text = f"<v {c.speaker}>{c.text.split(': ', 1)[1] if ': ' in c.text else c.text}"
        out += [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}", text, ""]
    return "\n".join(out)


def format_rttm(turns: list[Turn], file_id: str) -> str:
    """NIST RTTM lines, one ``SPEAKER`` line per turn:
    ``SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>`` (seconds, 3 decimals).
    ``file_id`` must not contain whitespace."""
    if not file_id or any(ch.isspace() for ch in file_id):
        raise ValueError(f"RTTM file id must be non-empty without whitespace, got {file_id!r}")
    lines = [
        f"SPEAKER {file_id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>"
        for t in sorted(turns, key=lambda t: (t.start, t.speaker))
    ]
    return "\n".join(lines) + ("\n" if lines else "")


class ResultCollector:
    """Event bus subscriber that keeps final caption words and speaker turns for
    :func:`format_srt`, :func:`format_vtt` and :func:`format_rttm` at the end of a run.
    Thread-safe."""

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
            elif event.TYPE == "speaker" and getattr(event, "name", None):
                self.names[event.id] = event.name  # type: ignore[attr-defined]

    @property
    def transcript(self) -> str:
        """All final caption text, segments joined by single spaces (none between two
        Chinese / Japanese characters, :func:`wavlm_live.text.join_words`)."""
        return join_words(self.text_segments)

    def write(self, stem: Path, file_id: str, formats: set[str]) -> list[Path]:
        """Write ``stem.srt``/``stem.vtt``/``stem.rttm``/``stem.txt`` for the requested
        ``formats`` (subset of ``{"srt", "vtt", "rttm", "txt"}``); returns the paths."""
        written = []
        cues = group_cues(self.words, names=self.names)
        contents = {
            "srt": lambda: format_srt(cues),
            "vtt": lambda: format_vtt(cues),
            "rttm": lambda: format_rttm(self.turns, file_id),
            "txt": lambda: self.transcript + "\n",
        }
        for fmt in sorted(formats):
            path = stem.with_suffix("." + fmt)
            path.write_text(contents[fmt](), encoding="utf-8")
            written.append(path)
        return written
