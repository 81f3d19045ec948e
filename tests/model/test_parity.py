"""Parity with transformers (the oracle) on tiny random-weight checkpoints loaded through
``load_pretrained``: logits, embeddings and every hidden state within 1e-4 in float32."""

from __future__ import annotations

import pytest
import torch

from wavlm_live.model import (WavLMForAudioFrameClassification, WavLMForCTC, WavLMForSequenceClassification,
                              WavLMForXVector, load_pretrained)

from .conftest import max_diff

TOL = 1e-4
# transformers itself warns about its mixed bool/float masks
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
CLASSES = {"WavLMForCTC": WavLMForCTC, "WavLMForAudioFrameClassification": WavLMForAudioFrameClassification,
           "WavLMForXVector": WavLMForXVector, "WavLMForSequenceClassification": WavLMForSequenceClassification}
# 400 samples: the one-frame minimum; 272000 samples (17 s, 850 frames): the position
# buckets saturate beyond 800 frames. The x-vector head needs >= 16 frames (5200 samples).
LENGTHS = {"WavLMForCTC": (400, 16123, 272000), "WavLMForAudioFrameClassification": (400, 16123, 272000),
           "WavLMForXVector": (5200, 16123, 272000), "WavLMForSequenceClassification": (400, 16123, 272000)}
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


def padded_batch(lengths: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random utterances of these lengths, zero-padded into ``[B, max]`` float32, and the
    sample-level attention mask (1 = valid), long."""
    x = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n)
        mask[i, :n] = 1
    return x, mask


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


@pytest.mark.parametrize("arch,style,weighted", CASES)
def test_parity_padded_batch_with_attention_mask(hf_checkpoint, arch, style, weighted):
    """Batches of different lengths, zero-padded, with a sample-level attention mask: the frame
    mask, the zeroed padding, the -inf key padding and (x-vector) transformers' pooling rule."""
    hf, folder = hf_checkpoint(arch, style, weighted)
    model = load_pretrained(folder).model
    torch.manual_seed(2)
    x, mask = padded_batch((24000, 9123, 16000))
    compare(hf, model, x, mask)
    # without hidden states the outputs are the same and no hidden states come back
    with torch.no_grad():
        plain = model(x, attention_mask=mask)
        full = model(x, attention_mask=mask, output_hidden_states=True)
    assert plain.hidden_states is None
    assert torch.equal(plain.logits, full.logits)


def test_xvector_pooling_lengths_follow_transformers(hf_checkpoint):
    """With a mask transformers pools frames - sum(kernel - 1) TDNN frames (dilation ignored)."""
    hf, folder = hf_checkpoint("WavLMForXVector")
    model = load_pretrained(folder).model
    frames = torch.tensor([16, 50, 400])
    assert model.pooling_lengths(frames).tolist() == hf._get_tdnn_output_lengths(frames).tolist() == [8, 42, 392]
    assert model.min_frames == 16
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(torch.randn(1, 5199))
    with pytest.raises(ValueError, match="valid samples"):
        model(torch.randn(2, 6000), attention_mask=torch.tensor([[1] * 6000, [1] * 300 + [0] * 5700]))


def test_position_buckets_match_transformers(hf_checkpoint):
    from wavlm_live.model.attention import relative_position_buckets

    hf, folder = hf_checkpoint("WavLMForCTC")
    att = hf.wavlm.encoder.layers[0].attention
    table = relative_position_buckets(1001)
    assert torch.equal(table, att._relative_positions_bucket(torch.arange(1001)[None, :] - torch.arange(1001)[:, None]))
    # reference spot values: rel = key - query
    assert [table[500, 500 + r].item() for r in (-1, 0, 1, 80, 100)] == [1, 0, 161, 240, 247]
    assert table[0, 1000].item() == table[0, 900].item() == 319  # saturated beyond 800 frames
    ours = load_pretrained(folder).model.wavlm.encoder.layers[0].attention
    big, small = ours.compute_bias(900), ours.compute_bias(37)  # the cached table is sliced for shorter windows
    assert torch.equal(small, big[:, :37, :37]) and torch.equal(small, att.compute_bias(37, 37))


def test_bad_inputs(hf_checkpoint):
    model = load_pretrained(hf_checkpoint("WavLMForCTC")[1]).model
    with pytest.raises(ValueError, match="at least 400"):
        model(torch.randn(1, 399))
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        model(torch.randn(16000))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(torch.randn(1, 16000), attention_mask=torch.ones(1, 15000))


def test_autograd_path_matches_inference_path(hf_checkpoint):
    """With autograd on, plain F.linear replaces the fused oneDNN kernels: same outputs."""
    hf, folder = hf_checkpoint("WavLMForAudioFrameClassification", "base", True)
    model = load_pretrained(folder).model
    x = torch.randn(2, 12000)
    with torch.no_grad():
        fast = model(x, output_hidden_states=True)
    with torch.enable_grad():
        slow = model(x, output_hidden_states=True)
    assert slow.logits.requires_grad
    for a, b in zip(fast.hidden_states + (fast.logits,), slow.hidden_states + (slow.logits,)):
        assert max_diff(a, b.detach()) <= TOL
    compare(hf, model, x)
