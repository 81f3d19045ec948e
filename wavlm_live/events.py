"""Events produced by the engine: frozen dataclasses with one JSON encoding.

Every event knows its wire ``type`` and encodes itself with :meth:`Event.to_dict` into a
JSON-ready ``dict`` that starts with ``{"type": ..., "v": PROTOCOL_VERSION}``. Publishers
(the websocket server, file writers) add their own envelope fields, for instance the
server's per-connection ``seq`` and wall-clock ``wall``; :func:`event_from_dict` reverses
the encoding and ignores envelope fields. The protocol is documented, with a JSON Schema
per message type, in ``docs/protocol.md``.

Times are seconds of stream time (float): sample index / 16000 since the stream started,
never wall-clock time. Speaker ids are strings ``"S1"``, ``"S2"``, ... assigned in order
of first appearance and stable for the whole stream.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
"""Schema version carried in every message's ``v`` field."""


def _clean(value: Any) -> Any:
    """Turn tuples/dataclasses into lists/dicts and non-finite floats into ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _clean(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of all events. Subclasses set the class variable ``TYPE``."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready encoding: ``{"type", "v", **fields}``; tuples become lists,
        NaN/inf floats become ``null``."""
        out: dict[str, Any] = {"type": self.TYPE, "v": PROTOCOL_VERSION}
        for f in dataclasses.fields(self):
            out[f.name] = _clean(getattr(self, f.name))
        return out


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word.

    Attributes:
        text: the word, as decoded (upper case for LibriSpeech-style vocabularies, in the
            text's case with ``do_lower_case``); for Chinese and Japanese one character.
        start: start time in seconds (stream time) of the word's first character frame.
        end: end time in seconds of the word's last character frame (exclusive).
        speaker: global speaker id active over most of the word, or ``None`` when
            diarization is off or nobody was active.
    """

    text: str
    start: float
    end: float
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class CaptionEvent(Event):
    """Caption text from the CTC model.

    ``final=True`` segments are settled: their frames will never change and they are
    published once, in order, with increasing ``segment`` numbers. ``final=False`` is the
    partial (unsettled) tail after the last final segment; each partial replaces the
    previous one, and the next final segment replaces it in turn. A partial carries the
    ``segment`` number its text will have when it becomes final.

    Attributes:
        final: settled (True) or partial (False).
        segment: segment number, 0-based, increasing by one per final segment.
        start: start time in seconds of the first word (or of the region when empty).
        end: end time in seconds of the last word (or of the region when empty).
        text: words joined by single spaces, without one between two Chinese / Japanese
            characters (:func:`wavlm_live.text.join_words`); may be empty for a partial.
        words: the words with their times and speakers.
        speaker: the speaker of most of the words, or ``None``.
    """

    TYPE: ClassVar[str] = "caption"
    final: bool
    segment: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """A speaker turn: one speaker active from ``start`` to ``end`` seconds."""

    speaker: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class DiarizationEvent(Event):
    """Settled diarization labels for frames ``[start, end)`` of the stream.

    Consecutive diarization events tile the stream's frame axis exactly.

    Attributes:
        start: start time in seconds of the first frame (a multiple of ``frame``).
        end: end time in seconds after the last frame.
        frame: frame duration in seconds (0.02 for WavLM at 16 kHz).
        labels: per frame, the sorted ids of the speakers active in it (several ids for
            overlapping speech, none for silence). ``len(labels) == round((end - start)
            / frame)``.
        turns: speaker turns that ended in or before this region and were not published
            before (a turn ends when its speaker has been silent for the configured gap).
    """

    TYPE: ClassVar[str] = "diarization"
    start: float
    end: float
    frame: float
    labels: tuple[tuple[str, ...], ...]
    turns: tuple[Turn, ...] = ()


@dataclass(frozen=True, slots=True)
class SpeakerEvent(Event):
    """State of one tracked speaker after an update (new embedding, rename, new talk time).

    Attributes:
        id: global speaker id (``"S1"``...).
        name: display name from enrolment or a rename, else ``None``.
        talk_time: seconds of settled frames where the speaker was active.
        turns: number of speaker turns so far.
        updates: number of x-vectors merged into the centroid.
        similarity: cosine similarity of the latest x-vector to the centroid before it
            was merged (``None`` before the second one).
        first_seen: stream time in seconds of the speaker's first active frame.
        last_seen: stream time in seconds of the speaker's last active frame.
        embedding: the L2-normalised centroid (x-vector dimension), or ``None`` when
            embeddings are off. Publishers send it only to clients that ask for it.
    """

    TYPE: ClassVar[str] = "speaker"
    id: str
    name: str | None
    talk_time: float
    turns: int
    updates: int
    similarity: float | None
    first_seen: float
    last_seen: float
    embedding: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class LevelEvent(Event):
    """Input level of the audio up to stream time ``t`` seconds.

    Attributes:
        t: stream time in seconds of the end of the measured audio.
        rms_db: RMS level in dBFS (full scale sine = -3.01 dBFS; silence is clamped at -120).
        peak_db: peak absolute sample level in dBFS (clamped at -120).
    """

    TYPE: ClassVar[str] = "level"
    t: float
    rms_db: float
    peak_db: float


@dataclass(frozen=True, slots=True)
class StatsEvent(Event):
    """Engine health, published after every analysed window and at the end.

    Attributes:
        t: stream time in seconds of the audio received so far.
        windows_analysed: windows run through the models so far.
        windows_skipped: windows dropped because the engine fell behind.
        rtf: real-time factor of the analysis: compute seconds per audio second of the
            hop, averaged over recent windows (< 1 keeps up).
        lag: seconds of received audio not yet analysed.
        input_overflows: overflow/drop events reported by the audio source.
        samples_sanitised: non-finite or out-of-range input samples that were repaired.
        ring_overwrites: samples overwritten in the ring buffer before being read.
        windows_silent: analysed windows in which the speech gate found no speech: no
            model ran on them and they settled as silence (0 without the gate).
        windows_widened: times the engine fell behind and caught up by cutting its next
            windows at a later tick that still leaves no frame unsettled (a wider hop
            instead of skipped windows).
        hop: seconds of audio the latest analysed tick advanced over the previous one
            (the finest hop; more while the engine widens it).
    """

    TYPE: ClassVar[str] = "stats"
    t: float
    windows_analysed: int
    windows_skipped: int
    rtf: float
    lag: float
    input_overflows: int = 0
    samples_sanitised: int = 0
    ring_overwrites: int = 0
    windows_silent: int = 0
    windows_widened: int = 0
    hop: float = 0.0


@dataclass(frozen=True, slots=True)
class ErrorEvent(Event):
    """A problem worth telling subscribers about; the stream may continue.

    Attributes:
        code: short machine-readable code, e.g. ``"audio"``, ``"model"``, ``"bad_message"``.
        message: one human-readable sentence.
        fatal: True when the stream stops because of it.
    """

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class EndEvent(Event):
    """The stream ended (file finished or capture stopped) at ``t`` seconds; every
    frame up to ``t`` has been settled and published."""

    TYPE: ClassVar[str] = "end"
    t: float


@dataclass(frozen=True, slots=True)
class Label:
    """One class of an utterance classifier with its probability.

    Attributes:
        label: the class name, from the checkpoint's ``id2label`` (e.g. ``"yes"``,
            ``"hap"``, ``"fr"``).
        score: softmax probability in [0, 1].
    """

    label: str
    score: float


@dataclass(frozen=True, slots=True)
class ClassificationEvent(Event):
    """An utterance classification (keyword, emotion, language...) of a stretch of audio.

    Attributes:
        start: start time in seconds of the classified audio.
        end: end time in seconds of the classified audio.
        speaker: the speaker of the turn (``None`` for a window, or without speakers).
        scope: ``"turn"`` (one speaker turn) or ``"window"`` (one analysis window, as
            for keyword spotting).
        labels: the top classes, best first (at most ``top_k``).
    """

    TYPE: ClassVar[str] = "classification"
    start: float
    end: float
    speaker: str | None
    scope: str
    labels: tuple[Label, ...]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (CaptionEvent, DiarizationEvent, SpeakerEvent, ClassificationEvent, LevelEvent, StatsEvent,
                ErrorEvent, EndEvent)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_dict` output (envelope fields ignored).

    Raises:
        ValueError: unknown ``type``, wrong ``v`` or missing/invalid fields.
    """
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    if data.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"unsupported protocol version {data.get('v')!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise ValueError(f"{kind} event lacks field {f.name!r}")
            continue
        kwargs[f.name] = data[f.name]
    try:
        if cls is CaptionEvent:
            kwargs["words"] = tuple(Word(**w) for w in kwargs.get("words", ()))
        elif cls is DiarizationEvent:
            kwargs["turns"] = tuple(Turn(**t) for t in kwargs.get("turns", ()))
            kwargs["labels"] = tuple(tuple(x) for x in kwargs["labels"])
        elif cls is ClassificationEvent:
            kwargs["labels"] = tuple(Label(**x) for x in kwargs.get("labels", ()))
        elif cls is SpeakerEvent and kwargs.get("embedding") is not None:
            kwargs["embedding"] = tuple(float(x) for x in kwargs["embedding"])
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad {kind} event: {exc}") from None
