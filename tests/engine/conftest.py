"""Tiny random-weight WavLM checkpoints in Hugging Face format, built with transformers
(a test-only dependency) and saved with ``save_pretrained``."""

import json

import pytest
import torch

LIBRISPEECH_VOCAB = {"[PAD]": 0, "[UNK]": 1, "|": 2, **{c: i + 3 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}, "'": 29}


def tiny_config(**overrides):
    from transformers import WavLMConfig

    kw = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        tdnn_dim=(32, 32, 32, 32, 64), xvector_output_dim=16, vocab_size=len(LIBRISPEECH_VOCAB),
        pad_token_id=0, num_labels=2,
    )
    kw.update(overrides)
    return WavLMConfig(**kw)


def save_tiny(folder, kind, seed=0, **overrides):
    """Write a tiny checkpoint of ``kind`` ('ctc', 'frames', 'xvector') to ``folder``."""
    from transformers import (
        Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, WavLMForAudioFrameClassification, WavLMForCTC,
        WavLMForXVector,
    )

    torch.manual_seed(seed)
    cls = {"ctc": WavLMForCTC, "frames": WavLMForAudioFrameClassification, "xvector": WavLMForXVector}[kind]
    model = cls(tiny_config(**overrides)).eval()
    if kind == "ctc":
        # Random heads give nearly constant logits; sharpen the head so that the argmax
        # varies from frame to frame, with blank and the delimiter frequent like a real model.
        with torch.no_grad():
            model.lm_head.weight *= 40
            model.lm_head.bias[0] += 2.0
            model.lm_head.bias[2] += 1.0
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    if kind == "ctc":
        (folder / "vocab.json").write_text(json.dumps(LIBRISPEECH_VOCAB))
        Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Folders of three tiny checkpoints: {'captions', 'diarization', 'embeddings'}."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "captions": save_tiny(root / "ctc", "ctc", seed=1),
        "diarization": save_tiny(root / "sd", "frames", seed=2),
        "embeddings": save_tiny(root / "sv", "xvector", seed=3),
    }
