"""wavlm-live: streaming WavLM speech analysis (captions, diarization, speaker embeddings,
utterance classification).

``wavlm_live.transcribe(path, ...)`` and ``wavlm_live.Analyzer`` are the Python API
(:mod:`wavlm_live.api`); they are imported on first use, so ``import wavlm_live`` stays light.
"""

from typing import Any

from .version import __version__

__all__ = ["Analyzer", "Result", "__version__", "transcribe"]


def __getattr__(name: str) -> Any:
    if name in ("Analyzer", "Result", "transcribe"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'wavlm_live' has no attribute {name!r}")
