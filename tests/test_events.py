"""Event encoding: every type round-trips through to_dict/event_from_dict and JSON."""

import json
import math

import pytest

from wavlm_live.events import (
    PROTOCOL_VERSION, CaptionEvent, DiarizationEvent, EndEvent, ErrorEvent, LevelEvent, SpeakerEvent, StatsEvent,
    Turn, Word, event_from_dict,
)

EXAMPLES = [
    CaptionEvent(final=True, segment=3, start=1.0, end=2.5, text="HELLO THERE",
                 words=(Word("HELLO", 1.0, 1.4, "S1"), Word("THERE", 1.6, 2.5, None)), speaker="S1"),
    CaptionEvent(final=False, segment=4, start=2.5, end=2.5, text=""),
    DiarizationEvent(start=1.0, end=1.06, frame=0.02, labels=(("S1",), ("S1", "S2"), ()), turns=(Turn("S2", 0.2, 0.9),)),
    SpeakerEvent(id="S2", name="Alice", talk_time=3.5, turns=2, updates=4, similarity=0.91, first_seen=0.2,
                 last_seen=9.0, embedding=(0.6, 0.8)),
    SpeakerEvent(id="S1", name=None, talk_time=0.0, turns=0, updates=0, similarity=None, first_seen=0.0, last_seen=0.0),
    LevelEvent(t=0.1, rms_db=-23.5, peak_db=-6.0),
    StatsEvent(t=5.0, windows_analysed=5, windows_skipped=1, rtf=0.4, lag=0.2, input_overflows=2),
    ErrorEvent(code="audio", message="device lost", fatal=True),
    EndEvent(t=12.34),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.TYPE)
def test_round_trip_through_json(event):
    data = json.loads(json.dumps(event.to_dict()))
    assert data["type"] == event.TYPE and data["v"] == PROTOCOL_VERSION
    assert event_from_dict({**data, "seq": 7, "wall": 1.0}) == event


def test_non_finite_floats_encode_as_null():
    data = StatsEvent(t=1.0, windows_analysed=0, windows_skipped=0, rtf=math.nan, lag=math.inf).to_dict()
    assert data["rtf"] is None and data["lag"] is None
    json.dumps(data, allow_nan=False)


@pytest.mark.parametrize("data", [
    {"type": "nope", "v": 1},
    {"type": "end", "v": 2, "t": 1.0},
    {"type": "end", "v": 1},
    {"type": "caption", "v": 1, "final": True, "segment": 0, "start": 0, "end": 1, "text": "A", "words": [{"x": 1}]},
    {"type": "diarization", "v": 1, "start": 0, "end": 1, "frame": 0.02, "labels": [], "turns": [{"speaker": "S1"}]},
])
def test_bad_messages_raise_value_error(data):
    with pytest.raises(ValueError):
        event_from_dict(data)
