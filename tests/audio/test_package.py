"""Import boundaries of wavlm_live.audio: sounddevice is imported lazily, and the package
does not reach into the engine, the server or the TUI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLIP = Path(__file__).resolve().parents[1] / "data" / "sense_and_sensibility_01_austen_64kb-0880.wav"

PROBE = f"""
import sys
import wavlm_live.audio as audio
src = audio.FileSource({str(CLIP)!r}, speed=None)
n = sum(len(b) for b in src.blocks())
assert n == src.num_samples, n
loaded = sorted(m for m in sys.modules if m == "sounddevice" or m.startswith(("wavlm_live.engine",
    "wavlm_live.server", "wavlm_live.tui", "wavlm_live.model", "torch", "textual", "websockets")))
print(loaded)
"""


def test_audio_package_imports_no_sounddevice_and_no_other_layer():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
