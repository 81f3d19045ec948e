#!/usr/bin/env bash
# Installs what wavlm-live needs on a Debian/Ubuntu machine into ./.venv:
#   system packages (PortAudio, PulseAudio for the virtual microphone, espeak-ng, sox, tmux,
#   ffmpeg for the media-file tests, the LibriVox test clips' package, a C++ compiler and
#   compression headers for kenlm, which pip builds from source) and the Python package with
#   its test extra.
# Idempotent: re-running it only installs what is missing.
# Environment: WAVLM_LIVE_NO_APT=1 skips apt; PYTHON picks the interpreter (>= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils
              espeak-ng sox libsox-fmt-all flac ffmpeg tmux pocketsphinx-testdata wordnet-base
              g++ python3-dev zlib1g-dev libbz2-dev liblzma-dev)  # the last five: pip builds kenlm from source
APT_PACKAGES+=(chromium)  # headless Chromium for the browser page's end-to-end test

if [[ "${WAVLM_LIVE_NO_APT:-0}" != 1 ]] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
    echo "setup: installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
# The CPU build of PyTorch (a wide range is allowed in pyproject; this pins the small CPU wheel).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "import torch, wavlm_live, wavlm_live.server, wavlm_live.tui" \
  || { echo "setup: the Python environment is incomplete" >&2; exit 1; }
echo "setup: ready (.venv/bin/wavlm-live)"
