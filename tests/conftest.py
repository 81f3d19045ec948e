"""Shared pytest fixtures.

`virtual_mic`: a PulseAudio null sink used as a virtual microphone. Audio played into the
sink with `pacat` is recorded from its monitor through ALSA's "pulse" device (how
PortAudio, hence sounddevice, sees PulseAudio). The PulseAudio server is started by
`scripts/pulse-virtual-mic.sh` (idempotent: a server .ci/run already started is reused).
Each test session gets its own null sink, so concurrent sessions do not hear each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
PULSE_SCRIPT = REPO / "scripts" / "pulse-virtual-mic.sh"
VMIC_RATE = 48000  # the null sink's rate, like a common sound card (float32, 2 channels)


@dataclass
class VirtualMic:
    """A null sink whose monitor is the default PulseAudio source of this process.

    Attributes:
        sink: PulseAudio sink name to play into.
        source: its monitor, which `PULSE_SOURCE` points the "pulse" ALSA device at.
        alsa_device: the PortAudio/sounddevice device name that records from `source`.
    """

    sink: str
    source: str
    tmp: Path
    alsa_device: str = "pulse"

    def play(self, audio: np.ndarray, rate: int) -> subprocess.Popen:
        """Start playing `audio` (float, [frames] or [frames, channels]) into the sink.

        Returns the `pacat` process; wait() on it to know when playback has drained.
        """
        path = self.tmp / f"play-{time.monotonic_ns()}.wav"
        sf.write(path, audio, rate, subtype="FLOAT")
        return subprocess.Popen(
            ["pacat", "--playback", f"--device={self.sink}", "--file-format=wav", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def _run_pulse_script() -> None:
    result = subprocess.run(
        [str(PULSE_SCRIPT), "--exit-idle-time", "10"], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        pytest.fail(f"{PULSE_SCRIPT.name} failed: {result.stderr.strip()}")


def _refresh_portaudio() -> None:
    """Make an already imported sounddevice re-enumerate devices now that the server runs.

    PortAudio lists ALSA devices once, at initialisation; without a PulseAudio server
    the "pulse" device is missing from that list.
    """
    sd = sys.modules.get("sounddevice")
    if sd is not None and hasattr(sd, "_terminate") and hasattr(sd, "_initialize"):
        sd._terminate()
        sd._initialize()


@pytest.fixture(scope="session")
def virtual_mic(tmp_path_factory: pytest.TempPathFactory):
    """Yield a `VirtualMic`; start PulseAudio first if it is not running."""
    missing = [t for t in ("pulseaudio", "pactl", "pacat") if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: apt-get install pulseaudio pulseaudio-utils libasound2-plugins"
        )
    # A connected client keeps the server from exiting on idle while this session runs.
    holder = None
    for _ in range(3):
        _run_pulse_script()
        holder = subprocess.Popen(["pactl", "subscribe"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        if holder.poll() is None and subprocess.run(["pactl", "info"], capture_output=True).returncode == 0:
            break
        holder.kill()
        holder.wait()
        holder = None
    if holder is None:
        pytest.fail("PulseAudio does not stay up: see /tmp/wavlm-live-pulse-*.log")

    sink = f"wavlm_test_{os.getpid()}"
    module = subprocess.run(
        ["pactl", "load-module", "module-null-sink", f"sink_name={sink}", f"rate={VMIC_RATE}",
         "channels=2", "format=float32le"],
        capture_output=True, text=True,
    )
    if module.returncode != 0:
        holder.kill()
        holder.wait()
        pytest.fail(f"cannot load the null sink: {module.stderr.strip()}")
    with pytest.MonkeyPatch.context() as mp:
        # libpulse records from PULSE_SOURCE when a client (ALSA's "pulse" pcm) names none.
        mp.setenv("PULSE_SOURCE", f"{sink}.monitor")
        _refresh_portaudio()
        try:
            yield VirtualMic(sink=sink, source=f"{sink}.monitor", tmp=tmp_path_factory.mktemp("vmic"))
        finally:
            subprocess.run(["pactl", "unload-module", module.stdout.strip()], capture_output=True)
            holder.terminate()
            holder.wait()
