"""wavlm-live: streaming WavLM speech analysis (captions, diarization, speaker embeddings)."""

__version__ = "0.1.0"
