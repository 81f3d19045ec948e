"""Parity with transformers (the oracle) on tiny random-weight checkpoints loaded through
``load_pretrained``: logits, embeddings and every hidden state within 1e-4 in float32."""

from __future__ import annotations

import pytest
import torch

from wavlm_live.model import WavLMForAudioFrameClassification, WavLMForCTC, WavLMForXVector, load_pretrained

from .conftest import max_diff

TOL = 1e-4
CLASSES = {"WavLMForCTC": WavLMForCTC, "WavLMForAudioFrameClassification": WavLMForAudioFrameClassification,
           "WavLMForXVector": WavLMForXVector}
# 400 samples: the one-frame minimum; 272000 samples (17 s, 850 frames): the position
# buckets saturate beyond 800 frames. The x-vector head needs >= 16 frames (5200 samples).
LENGTHS = {"WavLMForCTC": (400, 16123, 272000), "WavLMForAudioFrameClassification": (400, 16123, 272000),
           "WavLMForXVector": (5200, 16123, 272000)}
# WavLMForCTC has no weighted layer sum in transformers, so it is tested without it only
CASES = [(arch, style, weighted) for arch in CLASSES for style in ("base", "large") for weighted in (False, True)
         if not (arch == "WavLMForCTC" and weighted)]


def compare(hf, ours, x, mask=None):
    with torch.no_grad():
        ref = hf(x, attention_mask=mask, output_hidden_states=True)
        out = ours(x, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == hf.config.num_hidden_layers + 1
    for i, (a, b) in enumerate(zip(ref.hidden_states, out.hidden_states)):
        assert max_diff(a, b) <= TOL, f"hidden state {i}"
    assert max_diff(ref.logits, out.logits) <= TOL
    if hasattr(ref, "embeddings"):
        assert torch.isfinite(out.embeddings).all()
        assert max_diff(ref.embeddings, out.embeddings) <= TOL
    return ref, out


@pytest.mark.parametrize("arch,style,weighted", CASES)
def test_parity_all_lengths(hf_checkpoint, arch, style, weighted):
    hf, folder = hf_checkpoint(arch, style, weighted)
    pre = load_pretrained(folder)
    assert type(pre.model) is CLASSES[arch]
    assert pre.model.training is False
    torch.manual_seed(1)
    for n in LENGTHS[arch]:
        ref, out = compare(hf, pre.model, torch.randn(1, n))
        assert out.last_hidden_state.shape[1] == (n - 400) // 320 + 1
