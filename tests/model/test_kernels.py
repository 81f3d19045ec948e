"""The CPU fast paths (``kernels.py``, ``fast.py``): pre-packed bfloat16 oneDNN linears and
float32-score attention."""

import pytest
import torch
import torch.nn.functional as F

from wavlm_live.model import attention, fast, kernels


def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).pow(2).mean().sqrt() / b.float().pow(2).mean().sqrt()).item()


@pytest.fixture(autouse=True)
def _switches():
    yield
    kernels.PACK_BF16_WEIGHTS = True
    fast.EXPLICIT_BF16_ATTENTION = True


def test_packing_is_available_on_this_cpu():
    # the CI machine's PyTorch build has the op: the packed path below is really exercised
    assert kernels._packing_ok()


@pytest.mark.parametrize("activation,residual", [(None, False), ("gelu", False), (None, True)])
def test_packed_bf16_linear_matches_the_unpacked_op(activation, residual):
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 96).bfloat16()
    x = torch.randn(2, 37, 64, dtype=torch.bfloat16)
    res = torch.randn(2, 37, 96, dtype=torch.bfloat16) if residual else None
    with torch.inference_mode():
        kernels.PACK_BF16_WEIGHTS = False
        plain = kernels.linear(x, layer, activation, res)
        kernels.PACK_BF16_WEIGHTS = True
        packed = kernels.linear(x, layer, activation, res)
        assert layer.weight in kernels._derived  # the packed copy was made and cached
        assert torch.equal(packed, plain)
        reference = F.linear(x.float(), layer.weight.float(), layer.bias.float())
        reference = F.gelu(reference) if activation else reference
        reference = reference + res.float() if residual else reference
        assert _rel_rms(packed, reference) < 0.01


def test_packed_weight_follows_weight_updates():
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 16).bfloat16()
    x = torch.randn(5, 32, dtype=torch.bfloat16)
    with torch.inference_mode():
        before = kernels.linear(x, layer)
    with torch.no_grad():  # new weights loaded in place (load_state_dict does this)
        layer.weight.copy_(torch.randn(16, 32))
    with torch.inference_mode():
        after = kernels.linear(x, layer)
        expected = F.linear(x, layer.weight, layer.bias)
    assert not torch.allclose(after, before)
    assert _rel_rms(after, expected) < 0.01


@pytest.mark.parametrize("logit_scale", [1.0, 4.0])
def test_fp32_score_attention_is_closer_to_float32_than_the_bf16_kernel(logit_scale):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 120, 32) for _ in range(3))
    q = q * logit_scale  # scores of std 1 and 4: bfloat16's rounding of q k^T grows with them
    gate = 1 + torch.rand(2, 4, 120)
    bias = 3 * torch.randn(4, 120, 120)
    padding = torch.zeros(2, 120, dtype=torch.bool)
    padding[1, 100:] = True  # padded keys of the second utterance
    mask = (gate[..., None] * bias).masked_fill(padding[:, None, None, :], float("-inf"))
    qb, kb, vb = (t.bfloat16() for t in (q / 32 ** 0.5, k, v))  # the layer hands q scaled by 1/sqrt(d)
    reference = F.scaled_dot_product_attention(qb.double(), kb.double(), vb.double(), attn_mask=mask.double(),
                                               scale=1.0)
    with torch.inference_mode():  # the layer hands it the bias in float32, the kernel gets bfloat16
        ours = fast._attention_fp32_scores(qb, kb, vb, gate.bfloat16(), bias, padding)
        kernel = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask.bfloat16(), scale=1.0)
    assert ours.dtype == torch.bfloat16 and ours.shape == reference.shape
    assert _rel_rms(ours, reference) < 0.6 * _rel_rms(kernel, reference)
    assert _rel_rms(ours, reference) < 0.01
    # padded keys get no weight: changing their values changes nothing
    vb2 = vb.clone()
    vb2[1, :, 100:] = 100.0
    with torch.inference_mode():
        assert torch.equal(fast._attention_fp32_scores(qb, kb, vb2, gate.bfloat16(), bias, padding), ours)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.01)])
@pytest.mark.parametrize("stride,padding,groups", [(2, 0, 1), (1, 4, 4)])
def test_fused_conv_gelu_matches_conv_then_gelu(dtype, tol, stride, padding, groups):
    assert kernels._conv_gelu_ok(dtype)  # the fused oneDNN path is the one under test
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(16, 24, kernel_size=3, stride=stride, padding=padding, groups=groups).to(dtype)
    x = torch.randn(2, 16, 101, dtype=dtype)
    with torch.inference_mode():
        fused = kernels.conv1d_gelu(x, conv)
    reference = F.gelu(F.conv1d(x.float(), conv.weight.float(), conv.bias.float(), stride=stride,
                                padding=padding, groups=groups))
    assert fused.dtype == dtype and fused.shape == reference.shape
    assert _rel_rms(fused, reference) < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.01)])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (4, 3)])
@pytest.mark.parametrize("activation", [None, "gelu"])
def test_time_major_conv_matches_conv1d(dtype, tol, kernel, stride, activation):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(16, 24, kernel_size=kernel, stride=stride).to(dtype)
    x = torch.randn(2, 101, 16, dtype=dtype)  # [B, T, C] time-major
    reference = F.conv1d(x.float().transpose(1, 2), conv.weight.float(), conv.bias.float(), stride=stride)
    reference = reference.transpose(1, 2)
    reference = F.gelu(reference) if activation else reference
    with torch.inference_mode():
        fast = kernels.conv1d_time_major(x, conv, activation)
    assert conv.weight in kernels._derived  # the oneDNN matmul path ran (its reshaped weight is cached)
    assert fast.dtype == dtype and fast.shape == reference.shape
    assert _rel_rms(fast, reference) < tol
    with torch.enable_grad():  # the autograd path (F.conv1d) agrees
        slow = kernels.conv1d_time_major(x, conv.requires_grad_(True), activation)
    assert _rel_rms(slow.detach(), reference) < tol


def test_stacked_projection_follows_weight_updates():
    """The cached q/k/v/gate stack is rebuilt when any of its weights changes in place."""
    torch.manual_seed(0)
    att = fast.accelerate(attention.WavLMAttention(64, 4, num_buckets=16, max_distance=32))
    assert type(att) is fast.FastWavLMAttention
    x = torch.randn(1, 30, 64)

    def both():
        with torch.inference_mode():
            inferred = att(x)[0]
        with torch.enable_grad():  # the reference forward: four separate layers, no cache
            slow = att(x)[0].detach()
        return inferred, slow

    inferred, slow = both()
    assert torch.allclose(inferred, slow, atol=1e-5)
    for layer in (att.k_proj, att.gru_rel_pos_linear):
        with torch.no_grad():
            layer.weight.mul_(-1.5)  # e.g. an optimizer step or load_state_dict
        new_inferred, new_slow = both()
        assert not torch.allclose(new_inferred, inferred, atol=1e-3)
        assert torch.allclose(new_inferred, new_slow, atol=1e-5)
        inferred = new_inferred


def test_bf16_attention_off_the_cpu_uses_no_cpu_kernels():
    """The stacked projection is packed for oneDNN only on the CPU: an accelerated model moved
    to another device (the meta device stands in for CUDA here; oneDNN's ops have no kernel
    for it) runs bfloat16 attention on plain matmuls and SDPA."""
    att = fast.accelerate(attention.WavLMAttention(64, 4, num_buckets=16, max_distance=32))
    att = att.to("meta", torch.bfloat16)
    assert type(att) is fast.FastWavLMAttention
    with torch.inference_mode():
        out, bias = att(torch.empty(2, 30, 64, device="meta", dtype=torch.bfloat16))
    assert out.shape == (2, 30, 64) and out.device.type == "meta" and out.dtype == torch.bfloat16
    assert bias.shape == (4, 30, 30)
    plain = fast.accelerate(attention.SelfAttention(64, 4)).to("meta", torch.bfloat16)  # Wav2Vec2 / HuBERT
    assert type(plain) is fast.FastSelfAttention
    with torch.inference_mode():
        out, bias = plain(torch.empty(2, 30, 64, device="meta", dtype=torch.bfloat16),
                          key_padding=torch.zeros(2, 30, dtype=torch.bool, device="meta"))
    assert out.shape == (2, 30, 64) and out.device.type == "meta" and bias is None


def test_plain_bf16_attention_sdpa_is_as_exact_as_the_float32_score_form():
    """Wav2Vec2 / HuBERT attention (no bias) runs on SDPA in bfloat16 on the CPU too: its error
    against float64 attention is about that of the explicit float32-score form (~0.45%
    here), which WavLM's layers need only because of the bias."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 50, 32, dtype=torch.float64) for _ in range(3))
    q = q * 2 / 32 ** 0.5
    padding = torch.zeros(2, 50, dtype=torch.bool)
    padding[1, 37:] = True
    scores = (q @ k.transpose(-1, -2)).masked_fill(padding[:, None, None, :], float("-inf"))
    reference = torch.softmax(scores, -1) @ v
    att = fast.accelerate(attention.SelfAttention(128, 4).bfloat16().eval())
    assert type(att) is fast.FastSelfAttention
    with torch.inference_mode():
        kernel = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                                                attn_mask=~padding[:, None, None, :], scale=1.0)
        explicit = fast._attention_fp32_scores(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                                                    torch.ones(2, 4, 50, dtype=torch.bfloat16),
                                                    torch.zeros(4, 50, 50), padding)
    err = ((kernel.double() - reference).norm() / reference.norm()).item()
    assert err < 1e-2 and err <= 1.25 * ((explicit.double() - reference).norm() / reference.norm()).item()
    assert att(torch.randn(2, 50, 128).bfloat16(), key_padding=padding)[0].dtype == torch.bfloat16


@pytest.mark.parametrize("per_group", [2, 4, 8, 48])
def test_grouped_bf16_positional_conv_stays_close_to_float32(per_group):
    # oneDNN 3.12 on AMX CPUs gets grouped bf16 convolutions with 2-12 channels per group
    # wrong (60-100% relative error); conv1d_gelu must detect that and stay accurate.
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(16 * per_group, 16 * per_group, 128, padding=64, groups=16)
    x = torch.randn(1, 16 * per_group, 150)
    with torch.inference_mode():
        ref = F.gelu(conv(x))
        got = kernels.conv1d_gelu(x.bfloat16(), conv.bfloat16()).float()
    assert ((got - ref).norm() / ref.norm()).item() < 2e-2
