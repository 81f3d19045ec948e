"""The stream state a late-joining client needs, derived from the events seen so far."""

from __future__ import annotations

from collections import deque

from wavlm_live.events import CaptionEvent, ClassificationEvent, EndEvent, ErrorEvent, Event, SpeakerEvent, StatsEvent


class StreamState:
    """Latest speaker states, the latest classification per speaker (and of windows),
    recent final captions, the current partial, the first fatal error, the end, and the
    latest ``stats``.

    Fed every event in publish order (``update``); ``snapshot`` lists the events a new
    client is sent after ``hello``. Memory is bounded by ``recent_captions`` plus one
    event per speaker id. Not thread-safe: used from the server's event loop only.
    """

    def __init__(self, recent_captions: int) -> None:
        self._speakers: dict[str, SpeakerEvent] = {}
        self._classes: dict[str | None, ClassificationEvent] = {}
        self._finals: deque[CaptionEvent] = deque(maxlen=recent_captions)
        self._last_final_segment = -1
        self._partial: CaptionEvent | None = None
        self._end: EndEvent | None = None
        self.fatal: ErrorEvent | None = None
        """The first fatal error of the stream (the stream stopped), or ``None``."""
        self.last_stats: StatsEvent | None = None
        """The newest ``stats`` event, or ``None``."""

    def update(self, event: Event) -> None:
        """Take one published event into the state."""
        if isinstance(event, SpeakerEvent):
            self._speakers[event.id] = event
        elif isinstance(event, ClassificationEvent):
            self._classes.pop(event.speaker, None)
            self._classes[event.speaker] = event
        elif isinstance(event, CaptionEvent):
            if event.final:
                if self._finals.maxlen:
                    self._finals.append(event)
                self._last_final_segment = max(self._last_final_segment, event.segment)
                if self._partial is not None and self._partial.segment <= self._last_final_segment:
                    self._partial = None
            elif event.segment > self._last_final_segment:
                self._partial = event
        elif isinstance(event, EndEvent):
            self._end = event
        elif isinstance(event, ErrorEvent):
            if event.fatal and self.fatal is None:
                self.fatal = event
        elif isinstance(event, StatsEvent):
            self.last_stats = event

    @property
    def ended(self) -> bool:
        """True once the stream's ``end`` event was seen."""
        return self._end is not None

    def snapshot(self) -> list[Event]:
        """Speakers (in order of first appearance), the latest classification of each
        speaker (and the latest window classification), recent final captions (oldest first),
        the partial caption newer than the last final one, the fatal error that stopped
        the stream, and the end event, if seen."""
        events: list[Event] = list(self._speakers.values())
        events.extend(self._classes.values())
        events.extend(self._finals)
        if self._partial is not None:
            events.append(self._partial)
        if self.fatal is not None:
            events.append(self.fatal)
        if self._end is not None:
            events.append(self._end)
        return events
