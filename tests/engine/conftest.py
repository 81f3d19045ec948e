"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from wavlm_live.engine.tasks import CTCRunner, FrameRunner, XVectorRunner
from wavlm_live.model import load_pretrained


@pytest.fixture(scope="module")
def runners(tiny_checkpoints):
    """The three task runners over the tiny random checkpoints (one load per test module)."""
    return {
        "captions": CTCRunner(load_pretrained(tiny_checkpoints["captions"])),
        "diarization": FrameRunner(load_pretrained(tiny_checkpoints["diarization"])),
        "embeddings": XVectorRunner(load_pretrained(tiny_checkpoints["embeddings"])),
    }
