"""docs/audio.md's command that plays a file into the virtual microphone plays it at its
own rate (plain ``pacat FILE.wav`` played the WAV as raw 44.1 kHz stereo: 7.1 s in 2 s)."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_documented_playback_line_plays_in_real_time(virtual_mic):
    doc = (REPO / "docs" / "audio.md").read_text()
    block = re.search(r"```sh\n(.*?)```", doc, re.S).group(1)
    line = next(ln for ln in block.splitlines() if ln.startswith(("paplay", "pacat")))
    argv = [a.replace("wavlm_vmic", virtual_mic.sink) for a in shlex.split(line.split("#")[0]) if a != "&"]
    clip = REPO / argv[-1]
    argv[-1] = str(clip)
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    duration = sf.info(clip).duration
    assert duration * 0.9 < elapsed < duration + 3.0, (line, elapsed, duration)
