"""Defaults of the command line that other parts need too (no imports)."""

DEFAULT_MODELS = {
    "captions": "patrickvonplaten/wavlm-libri-clean-100h-base-plus",
    "diarization": "microsoft/wavlm-base-plus-sd",
    "embeddings": "microsoft/wavlm-base-plus-sv",
}
"""Public checkpoints used when no model option is given (Hugging Face Hub ids)."""

DEFAULT_TASK_WINDOWS = {"captions": (3.0, 0.5, 37), "diarization": (4.0, 2.0)}
"""Task -> (window seconds, hop seconds[, right context in 20 ms frames]) when neither ``--window`` nor
``--hop`` is given: captions every 0.5 s on 3 s windows with 37 frames (0.74 s) of right
context (low-latency partials and finals; CER of the demo captions model within 0.5 points
of 4 s / 1 s windows on four caption folders, where 2 s windows lost 0.7), diarization and its x-vectors every
2 s on 4 s windows with 1 s of right context (DER within 0.5 points of a 1 s hop on both
demo conversation folders at half the diarization and x-vector passes).
Measured in docs/engine.md, "Schedules"."""

TOKEN_ENV = "WAVLM_LIVE_TOKEN"
"""Environment variable holding the websocket bearer token (so it stays out of ``ps``)."""
CONTROL_TOKEN_ENV = "WAVLM_LIVE_CONTROL_TOKEN"
"""Environment variable holding the control token (renames of the server input's speakers)."""
