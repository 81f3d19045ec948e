"""Defaults of the command line that other parts need too (no imports)."""

DEFAULT_MODELS = {
    "captions": "patrickvonplaten/wavlm-libri-clean-100h-base-plus",
    "diarization": "microsoft/wavlm-base-plus-sd",
    "embeddings": "microsoft/wavlm-base-plus-sv",
}
"""Public checkpoints used when no model option is given (Hugging Face Hub ids)."""

TOKEN_ENV = "WAVLM_LIVE_TOKEN"
"""Environment variable holding the websocket bearer token (so it stays out of ``ps``)."""
CONTROL_TOKEN_ENV = "WAVLM_LIVE_CONTROL_TOKEN"
"""Environment variable holding the control token (renames of the server input's speakers)."""
