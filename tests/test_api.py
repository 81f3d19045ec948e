"""The Python API (wavlm_live.transcribe / Analyzer): results in memory, streams of pushed
blocks equal to the file route, the async iterator, options checked, and the README's API
examples run as written (on the bundled demo recording)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import wavlm_live
from wavlm_live.cli.app import demo_recording
from wavlm_live.events import CaptionEvent, EndEvent

README = Path(__file__).resolve().parents[1] / "README.md"
CLIP = Path(__file__).resolve().parent / "data" / "sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def analyzer():
    return wavlm_live.Analyzer(demo=True, dtype="float32", tasks=["captions", "diarization", "embeddings"])


def finals(events):
    return [(e.text, e.speaker) for e in events if isinstance(e, CaptionEvent) and e.final and e.text]


def test_transcribe_gives_captions_turns_speakers_embeddings(analyzer):
    result = analyzer.transcribe(demo_recording())
    assert result.duration == pytest.approx(sf.info(demo_recording()).duration, abs=1e-3)
    assert len(result.captions) >= 10 and result.text.startswith(result.captions[0].text)
    assert {c.speaker for c in result.captions} == set(result.speakers) == {"S1", "S2"}
    assert all(w.start <= w.end for c in result.captions for w in c.words)
    assert len(result.turns) >= 10 and all(t.speaker in result.speakers for t in result.turns)
    assert all(len(s.embedding) > 0 for s in result.speakers.values())
    assert isinstance(result.events[-1], EndEvent)


def test_pushed_blocks_equal_the_file_route(analyzer, tmp_path):
    mono, rate = sf.read(CLIP, dtype="float32")
    stereo = soxr.resample(np.stack([mono, 0.7 * mono], axis=1), rate, 44100).astype(np.float32)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    from_file = analyzer.transcribe(path)
    blocks = (stereo[i : i + 1234] for i in range(0, len(stereo), 1234))
    pushed = list(analyzer.stream(blocks, sample_rate=44100))
    assert finals(pushed) == [(c.text, c.speaker) for c in from_file.captions] and from_file.captions
    assert pushed[-1] == EndEvent(t=from_file.duration)


async def test_async_stream_yields_the_same_events(analyzer):
    audio, _ = sf.read(CLIP, dtype="float32")
    sync = [e for e in analyzer.stream(audio, sample_rate=16000) if not hasattr(e, "rms_db")]
    got = [e async for e in analyzer.astream(audio, sample_rate=16000) if not hasattr(e, "rms_db")]
    strip = [e for e in got if type(e).__name__ != "StatsEvent"]
    assert strip == [e for e in sync if type(e).__name__ != "StatsEvent"]


def test_bad_options_are_clear(analyzer):
    with pytest.raises(TypeError, match="unknown option 'windwo'"):
        wavlm_live.Analyzer(demo=True, windwo=3)
    with pytest.raises(ValueError, match="tasks must be"):
        wavlm_live.Analyzer(demo=True, tasks=["captions", "translation"])
    with pytest.raises(ValueError, match="sample_rate"):
        list(analyzer.stream(np.zeros(16000, np.float32)))
    from wavlm_live.cli import CliError

    with pytest.raises(CliError, match="not found|no such|cannot"):
        analyzer.transcribe("/nonexistent/talk.flac")


@pytest.mark.slow
def test_readme_api_examples_run(capsys):
    blocks = re.findall(r"```python\n(import wavlm_live\n.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no API example"
    for code in blocks:
        exec(compile(code.replace('"talk.flac"', repr(str(demo_recording()))), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "CONSERVATISM" in out
