"""Fixtures for the model tests: tiny random-weight transformers models saved with
``save_pretrained`` (transformers is the oracle; it is a test-only dependency)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            conv_dim=[16] * 7, tdnn_dim=[16, 16, 16, 16, 24], xvector_output_dim=12, vocab_size=12, num_labels=3)
"""A very small WavLM: default conv kernels/strides (so frames are 20 ms apart and see 400
samples) and default position buckets (320 buckets, saturating at 800 frames)."""

STYLES = {
    "base": dict(feat_extract_norm="group", do_stable_layer_norm=False),
    "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True),
}

VOCAB = ["<pad>", "<unk>", "|", "A", "B", "C", "D", "E", "F", "G", "H", "'"]


def hf_config(style: str = "base", weighted: bool = False, **over):
    import transformers

    return transformers.WavLMConfig(**{**TINY, **STYLES[style], "use_weighted_layer_sum": weighted, **over})


def build_hf(arch: str, config, seed: int = 0):
    """A transformers task model with every parameter randomly perturbed (so LayerNorm
    weights, biases and gates are not at their identity init), in eval mode."""
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, arch)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def write_tokenizer(folder: Path, tokens=VOCAB, **kwargs) -> None:
    """Tokenizer files as transformers writes them."""
    from transformers import Wav2Vec2CTCTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab_src.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    tok = Wav2Vec2CTCTokenizer(str(vocab_file), unk_token="<unk>", pad_token="<pad>", **kwargs)
    tok.save_pretrained(str(folder))
    vocab_file.unlink()


def save_hf(model, folder: Path, do_normalize: bool = False) -> Path:
    """``save_pretrained`` a transformers model plus its feature extractor (and tokenizer for CTC)."""
    from transformers import Wav2Vec2FeatureExtractor

    model.save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(do_normalize=do_normalize).save_pretrained(str(folder))
    if type(model).__name__ == "WavLMForCTC":
        write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """``hf_checkpoint(arch, style, weighted) -> (transformers model, folder)``, cached per session."""
    cache: dict = {}

    def make(arch: str, style: str = "base", weighted: bool = False):
        key = (arch, style, weighted)
        if key not in cache:
            model = build_hf(arch, hf_config(style, weighted), seed=len(cache))
            folder = save_hf(model, tmp_path_factory.mktemp(f"{arch}-{style}-{int(weighted)}"))
            cache[key] = (model, folder)
        return cache[key]

    return make


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()
