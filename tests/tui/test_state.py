"""Unit tests of the dashboard state and formatting helpers (no Textual app, no network)."""

from __future__ import annotations

import math

import pytest
from wavlm_live.tui.state import DashboardConfig, DashboardState, clock, short_clock, speaker_runs
from wavlm_live.tui.widgets import PALETTE, _duration, level_meter, speaker_colour

from wavlm_live.events import CaptionEvent, DiarizationEvent, EndEvent, LevelEvent, SpeakerEvent, StatsEvent, Word


def caption(segment: int, text: str, final: bool, start: float = 0.0, speaker: str | None = "S1") -> dict:
    words = tuple(Word(w, start + i, start + i + 0.5, speaker) for i, w in enumerate(text.split()))
    end = words[-1].end if words else start
    return CaptionEvent(final=final, segment=segment, start=start, end=end, text=text,
                        words=words, speaker=speaker).to_dict()


def diar(start_frame: int, labels: list[tuple[str, ...]], frame: float = 0.02) -> dict:
    return DiarizationEvent(start=start_frame * frame, end=(start_frame + len(labels)) * frame, frame=frame,
                            labels=tuple(labels)).to_dict()


def speaker(sid: str, name: str | None = None, talk: float = 1.0) -> dict:
    return SpeakerEvent(id=sid, name=name, talk_time=talk, turns=1, updates=1, similarity=None,
                        first_seen=0.0, last_seen=1.0).to_dict()


@pytest.mark.parametrize("kwargs", [
    {"history": 0}, {"transcript": -1}, {"window_s": 0.0}, {"refresh_s": math.nan},
    {"backoff_initial_s": 2.0, "backoff_max_s": 1.0},
])
def test_config_rejects_values_out_of_range(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_s")[0]):
        DashboardConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"history": True}, {"transcript": 2.0}, {"open_timeout_s": "5"},
                                    {"window_s": True}])
def test_config_rejects_wrong_types(kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        DashboardConfig(**kwargs)


def test_bad_messages_are_counted_and_ignored():
    state = DashboardState()
    good = caption(0, "HELLO", True)
    bad = [
        "not a dict",
        {**good, "text": 5},
        {**good, "v": 2},
        {k: v for k, v in good.items() if k != "segment"},
        {**good, "words": [{"text": "HELLO"}]},
        {**good, "words": [{"text": "HELLO", "start": "0", "end": 1.0, "speaker": None}]},
        {**diar(0, [("S1",)]), "labels": [[1]]},
        {**speaker("S1"), "turns": "one"},
        {**speaker("S1"), "name": 7},
        {"type": "level", "v": 1, "t": 0.0, "rms_db": "loud", "peak_db": 0.0},
    ]
    for msg in bad:
        state.ingest(msg)
    assert state.bad_messages == len(bad)
    assert not state.finals and not state.speakers and state.level is None and not state.frames
    state.ingest({"type": "from_the_future", "v": 1})  # unknown types: ignored, not bad
    assert state.bad_messages == len(bad)
    state.ingest(good)
    assert [e.text for e in state.finals] == ["HELLO"]


def test_null_floats_become_nan_and_format_as_dash():
    state = DashboardState()
    stats = StatsEvent(t=1.0, windows_analysed=1, windows_skipped=0, rtf=math.inf, lag=math.nan).to_dict()
    assert stats["rtf"] is None and stats["lag"] is None  # how the server sends them
    state.ingest({**stats, "clients": 2})
    assert math.isnan(state.stats.rtf) and math.isnan(state.stats.lag) and state.clients == 2
    state.ingest({**speaker("S1"), "talk_time": None})
    assert _duration(state.speakers["S1"].talk_time) == "—"
    state.ingest(LevelEvent(t=1.0, rms_db=math.nan, peak_db=math.nan).to_dict())
    assert level_meter(state.level.rms_db, state.level.peak_db, 8).plain == "·" * 8


def test_partial_then_final_and_stale_or_repeated_captions():
    state = DashboardState()
    state.ingest(caption(0, "AND MISTER", False))
    assert state.partial.text == "AND MISTER" and not state.finals
    state.ingest(caption(0, "AND MISTER JOHN", True))
    assert state.partial is None and [e.text for e in state.finals] == ["AND MISTER JOHN"]
    state.ingest(caption(0, "AND MISTER", False))  # a late partial of a segment already final
    assert state.partial is None
    state.ingest(caption(1, "HE WAS", False, start=5.0))
    assert state.partial.segment == 1
    state.ingest(caption(0, "AND MISTER JOHN", True))  # the snapshot after a reconnect repeats it
    assert state.finals_total == 1 and state.partial.segment == 1
    state.ingest(caption(1, "", True, start=5.0))  # an empty final: nothing to show, partial gone
    assert state.finals_total == 1 and state.partial is None and state.last_segment == 1
    state.ingest(caption(2, "", False, start=9.0))
    assert state.partial is None


def test_finals_are_bounded_by_transcript():
    state = DashboardState(DashboardConfig(transcript=3))
    for i in range(10):
        state.ingest(caption(i, f"W{i}", True, start=float(i)))
    assert [e.text for e in state.finals] == ["W7", "W8", "W9"]
    assert state.finals_total == 10
    assert [e.text for e in state.last_finals(2)] == ["W8", "W9"]
    assert [e.text for e in state.last_finals(99)] == ["W7", "W8", "W9"]


def test_diarization_tiles_trims_repeats_fills_gaps_and_is_bounded():
    state = DashboardState(DashboardConfig(window_s=1.0))  # 50 frames of 0.02 s
    state.ingest(diar(0, [("S1",)] * 10))
    state.ingest(diar(5, [("S1",)] * 5 + [("S2",)] * 5))  # frames 5-9 repeated, 10-14 new
    assert len(state.frames) == 15 and state.frames_end == pytest.approx(0.30)
    assert list(state.frames)[10:] == [("S2",)] * 5
    state.ingest(diar(20, [("S1", "S2")] * 5))  # frames 15-19 lost: unknown, drawn as silence
    assert len(state.frames) == 25 and list(state.frames)[15:20] == [()] * 5
    state.ingest(diar(25, [()] * 100))
    assert len(state.frames) == 50 and state.frames_end == pytest.approx(2.5)


def test_activity_fractions_per_cell_and_overlap():
    state = DashboardState(DashboardConfig(window_s=1.0))
    labels = [("S1",)] * 10 + [("S1", "S2")] * 10 + [()] * 10 + [("S2",)] * 5 + [()] * 5 + [("S2",)] * 10
    state.ingest(diar(0, labels))
    per, overlap, t_end = state.activity(5, ["S1", "S2", "S3"])
    assert t_end == pytest.approx(1.0)
    assert per["S1"] == pytest.approx([1, 1, 0, 0, 0])
    assert per["S2"] == pytest.approx([0, 1, 0, 0.5, 1])
    assert per["S3"] == [0.0] * 5
    assert overlap == pytest.approx([0, 1, 0, 0, 0])
    assert state.current_speakers() == {"S2"}

    # 0.1 s more: the cells stay on the 0.2 s grid (0.2-0.4 s ... 1.0-1.2 s); the frames
    # of 0.1-0.2 s are before it, and the last cell counts only the 5 frames it has
    state.ingest(diar(50, [("S1",)] * 5))
    per, overlap, t_end = state.activity(5, ["S1", "S2"])
    assert t_end == pytest.approx(1.2)
    assert per["S1"] == pytest.approx([1, 0, 0, 0, 1])
    assert per["S2"] == pytest.approx([1, 0, 0.5, 1, 0])
    assert overlap == pytest.approx([1, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="columns"):
        state.activity(0, ["S1"])


def test_rename_bumps_names_version_and_display_name():
    state = DashboardState()
    state.ingest(speaker("S1"))
    before = state.names_version
    state.ingest(speaker("S1", talk=2.0))
    assert state.names_version == before  # a talk-time update is not a rename
    state.ingest(speaker("S1", name="Alice"))
    assert state.names_version == before + 1
    assert state.display_name("S1") == "Alice" and state.display_name("S2") == "S2"
    assert state.display_name(None) == "?"


def test_stream_time_going_back_means_a_new_stream():
    state = DashboardState()
    state.ingest(speaker("S1"))
    state.ingest(caption(0, "OLD", True))
    state.ingest(LevelEvent(t=100.0, rms_db=-20.0, peak_db=-10.0).to_dict())
    state.ingest(LevelEvent(t=99.5, rms_db=-20.0, peak_db=-10.0).to_dict())  # jitter: same stream
    assert state.finals_total == 1 and state.speakers
    state.ingest(LevelEvent(t=2.0, rms_db=-20.0, peak_db=-10.0).to_dict())
    assert not state.finals and not state.speakers and state.stream_time == 2.0
    state.ingest(caption(0, "NEW", True))
    assert [e.text for e in state.finals] == ["NEW"]


def test_dropped_is_the_sum_of_dropped_messages():
    state = DashboardState()
    state.ingest({"type": "dropped", "v": 1, "seq": 5, "wall": 0.0, "count": 3, "types": {"level": 3}})
    state.ingest({"type": "dropped", "v": 1, "seq": 9, "wall": 0.0, "count": 2, "types": {"stats": 2}})
    state.ingest({"type": "dropped", "v": 1, "seq": 10, "wall": 0.0, "count": "x"})
    assert state.dropped == 5


def test_clear_keeps_speakers():
    state = DashboardState()
    state.ingest(speaker("S1"))
    state.ingest(caption(0, "A", True))
    state.ingest(caption(1, "B", False))
    state.ingest(diar(0, [("S1",)] * 5))
    state.clear()
    assert not state.finals and state.partial is None and not state.frames and "S1" in state.speakers


def test_transcript_lines_split_runs_and_name_speakers():
    state = DashboardState()
    state.ingest(speaker("S1", name="Alice"))
    words = (Word("HI", 1.0, 1.5, "S1"), Word("THERE", 1.6, 2.0, "S1"), Word("YES", 2.5, 2.9, "S2"),
             Word("UM", 3.0, 3.2, None))
    state.ingest(CaptionEvent(final=True, segment=0, start=1.0, end=3.2, text="HI THERE YES UM",
                              words=words, speaker="S1").to_dict())
    state.ingest(CaptionEvent(final=True, segment=1, start=3723.456, end=3724.0, text="NO WORDS",
                              speaker=None).to_dict())
    assert state.transcript_lines() == [
        "[0:00:01.00 - 0:00:02.00] Alice (S1): HI THERE",
        "[0:00:02.50 - 0:00:02.90] S2: YES",
        "[0:00:03.00 - 0:00:03.20] ?: UM",
        "[1:02:03.46 - 1:02:04.00] ?: NO WORDS",
    ]


def test_speaker_runs_without_words_and_empty():
    e = CaptionEvent(final=True, segment=0, start=1.0, end=2.0, text="", words=(), speaker="S1")
    assert speaker_runs(e) == []


def test_clock_formats_round_before_splitting():
    assert clock(59.999) == "0:01:00.00"
    assert clock(-1.0) == "0:00:00.00"
    assert short_clock(59.96) == "1:00.0"
    assert short_clock(12.34) == "0:12.3"
    assert short_clock(3725.0) == "1:02:05"


def test_speaker_colours_and_level_meter():
    assert speaker_colour("S1") == PALETTE[0] and speaker_colour("S9") == PALETTE[0]
    assert speaker_colour("S2") == PALETTE[1]
    assert speaker_colour("guest") == speaker_colour("guest") in PALETTE
    assert speaker_colour(None) not in PALETTE
    # -30 dBFS RMS fills half of a 60 dB scale; the -6 dBFS peak sits at 90 %
    assert level_meter(-30.0, -6.0, 10).plain == "█████····│"
    assert level_meter(0.0, 0.0, 4).plain == "████"
    assert level_meter(-120.0, -120.0, 4).plain == "····"
    assert level_meter(None, None, 3).plain == "···"


HELLO = {"type": "hello", "v": 1, "seq": 0, "wall": 0.0, "demo": False, "models": {}}


def snap(msg: dict) -> dict:
    return {**msg, "snapshot": True}


def test_reconnect_to_the_same_stream_skips_the_repeated_snapshot():
    state = DashboardState()
    state.ingest(HELLO)
    state.ingest(speaker("S1", talk=1.0))
    state.ingest(caption(0, "A B", True))
    state.ingest(caption(1, "C D", True, start=3.0))
    state.ingest(HELLO)  # reconnected: the server sends its snapshot
    state.ingest(snap(speaker("S1", talk=2.0)))
    state.ingest(snap(caption(0, "A B", True)))
    state.ingest(snap(caption(1, "C D", True, start=3.0)))
    state.ingest(snap(caption(2, "E", False, start=6.0)))
    state.ingest(caption(2, "E F", True, start=6.0))
    assert [e.text for e in state.finals] == ["A B", "C D", "E F"]
    assert state.speakers["S1"].talk_time == 2.0


def test_reconnect_to_a_new_stream_replaces_the_old_one():
    state = DashboardState()
    state.ingest(HELLO)
    state.ingest(speaker("S1", talk=9.0))
    state.ingest(speaker("S2", talk=4.0))
    for i in range(4):
        state.ingest(caption(i, f"OLD{i}", True, start=2.0 * i))
    state.ingest(HELLO)  # a restarted server: same ids and segment numbers, other content
    state.ingest(snap(speaker("S1", talk=1.0)))  # less talk time than before: a new stream
    state.ingest(snap(caption(0, "NEW0", True)))
    state.ingest(snap(caption(1, "NEW1", False, start=2.0)))
    assert [e.text for e in state.finals] == ["NEW0"]
    assert list(state.speakers) == ["S1"] and state.speakers["S1"].talk_time == 1.0
    assert state.partial.text == "NEW1"

    state2 = DashboardState()
    state2.ingest(HELLO)
    state2.ingest(speaker("S1", talk=1.0))
    state2.ingest(caption(0, "OLD0", True))
    state2.ingest(HELLO)
    state2.ingest(snap(speaker("S1", talk=1.5)))  # could be the same stream...
    state2.ingest(snap(caption(0, "NEW0", True)))  # ...but segment 0 has other text
    assert [e.text for e in state2.finals] == ["NEW0"]
    assert state2.speakers["S1"].talk_time == 1.5  # the snapshot so far is kept


def test_another_stream_id_in_hello_starts_afresh():
    state = DashboardState()
    state.ingest(dict(HELLO, stream="a1"))
    state.ingest(speaker("S1", talk=9.0))
    state.ingest(caption(0, "OLD0", True))
    state.ingest(dict(EndEvent(t=45.9).to_dict()))
    assert state.ended is not None
    state.ingest(dict(HELLO, stream="a1"))  # the same stream again (a reconnect): kept
    assert state.ended is not None and [e.text for e in state.finals] == ["OLD0"]
    state.ingest(dict(HELLO, stream="b2"))  # a restarted server replaying the same file
    assert state.ended is None and not state.finals and not state.speakers


def test_the_dashboard_imports_neither_torch_nor_the_engine():
    import subprocess
    import sys

    code = ("import sys, wavlm_live.tui; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' "
            "or m.startswith(('wavlm_live.engine', 'wavlm_live.model', 'wavlm_live.server'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
