"""The CPU fast paths: pre-packed bfloat16 oneDNN linears and float32-score attention."""

import pytest
import torch
import torch.nn.functional as F

from wavlm_live.model import attention, kernels


def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).pow(2).mean().sqrt() / b.float().pow(2).mean().sqrt()).item()


@pytest.fixture(autouse=True)
def _switches():
    yield
    kernels.PACK_BF16_WEIGHTS = True
    attention.EXPLICIT_BF16_ATTENTION = True


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
        ours = attention._attention_fp32_scores(qb, kb, vb, gate.bfloat16(), bias, padding)
        kernel = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask.bfloat16(), scale=1.0)
    assert ours.dtype == torch.bfloat16 and ours.shape == reference.shape
    assert _rel_rms(ours, reference) < 0.6 * _rel_rms(kernel, reference)
    assert _rel_rms(ours, reference) < 0.01
    # padded keys get no weight: changing their values changes nothing
    vb2 = vb.clone()
    vb2[1, :, 100:] = 100.0
    with torch.inference_mode():
        assert torch.equal(attention._attention_fp32_scores(qb, kb, vb2, gate.bfloat16(), bias, padding), ours)


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
