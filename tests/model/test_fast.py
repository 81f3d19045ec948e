"""The reference model and the CPU fast path (``fast.accelerate``): the reference forwards
(``load_pretrained(..., fast=False)``) match transformers at the parity tolerance on their
own, ``accelerate`` swaps module classes in place and only where it applies, is idempotent,
and the fast model agrees with the reference in float32 and bfloat16."""

from __future__ import annotations

import copy

import pytest
import torch

from wavlm_live.model import accelerate, fast, kernels, load_pretrained
from wavlm_live.model.attention import SelfAttention, WavLMAttention

from .conftest import build_hf, hf_config, max_diff, save_hf
from .hub_layouts import write_checkpoint
from .test_parity import CASES, CLASSES, LENGTHS, TOL, compare, padded_batch

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
BF16_TOL = 3e-2  # relative error of the bfloat16 tests (test_loading, test_families, test_gpu)
# 16 channels per positional-conv group (the tiny default has 2): oneDNN computes grouped
# bfloat16 convolutions with fewer wrongly on this CPU (kernels._grouped_bf16_ok). The fast
# path works around that; the reference model is plain nn.Conv1d and gets it wrong, as
# transformers does. Real checkpoints have 48 or 64 channels per group.
SAFE_GROUPS = {"num_conv_pos_embedding_groups": 2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / a.float().norm()).item()


def outputs(out) -> tuple[torch.Tensor, ...]:
    """Every hidden state, the logits and (x-vector) the embeddings."""
    return out.hidden_states + (out.logits,) + ((out.embeddings,) if getattr(out, "embeddings", None) is not None
                                                  else ())


def fast_modules(model: torch.nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) in fast.FAST_MODULES.values()]


def reference_modules(model: torch.nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) in fast.FAST_MODULES]


@pytest.mark.parametrize("arch,style,weighted", CASES)
def test_reference_model_matches_transformers(hf_checkpoint, arch, style, weighted):
    """The plain PyTorch forwards alone (no fast path) are within the parity tolerance of
    transformers, one utterance at every length and a padded batch with a mask."""
    hf, folder = hf_checkpoint(arch, style, weighted)
    pre = load_pretrained(folder, fast=False)
    assert type(pre.model) is CLASSES[arch]
    assert fast_modules(pre.model) == [] and reference_modules(pre.model)
    torch.manual_seed(1)
    for n in LENGTHS[arch]:
        compare(hf, pre.model, torch.randn(1, n))
    x, mask = padded_batch((24000, 9123, 16000))
    compare(hf, pre.model, x, mask)


def test_load_pretrained_accelerates_cpu_models_and_accelerate_is_idempotent(hf_checkpoint):
    _, folder = hf_checkpoint("WavLMForXVector", "base", True)
    model = load_pretrained(folder).model
    assert reference_modules(model) == []
    classes = {name: type(m) for name, m in model.named_modules()}
    assert type(model.wavlm.encoder.layers[0].attention) is fast.FastWavLMAttention
    assert isinstance(model.wavlm.encoder.layers[0].attention, WavLMAttention)
    params = {name: p.data_ptr() for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    assert accelerate(model) is model  # again: nothing changes
    assert {name: type(m) for name, m in model.named_modules()} == classes
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == params

    reference = load_pretrained(folder, fast=False).model
    assert list(reference.state_dict()) == keys
    params = {name: p.data_ptr() for name, p in reference.named_parameters()}
    assert accelerate(reference) is reference
    assert {name: type(m) for name, m in reference.named_modules()} == classes  # swapped in place
    assert {name: p.data_ptr() for name, p in reference.named_parameters()} == params  # no copies


def test_accelerate_leaves_other_devices_and_dtypes_alone(hf_checkpoint):
    _, folder = hf_checkpoint("WavLMForCTC")
    half = load_pretrained(folder, dtype="float16").model
    assert fast_modules(half) == []
    reference = load_pretrained(folder, fast=False).model
    on_meta = copy.deepcopy(reference).to("meta")  # stands in for CUDA: no error, nothing swapped
    assert accelerate(on_meta) is on_meta and fast_modules(on_meta) == []
    assert accelerate(reference.half()) is reference and fast_modules(reference) == []


@pytest.mark.parametrize("arch,style,weighted", [("WavLMForCTC", "base", False),
                                                 ("WavLMForCTC", "large", False),
                                                 ("WavLMForAudioFrameClassification", "large", True),
                                                 ("WavLMForXVector", "base", True),
                                                 ("WavLMForSequenceClassification", "large", True)])
def test_fast_path_agrees_with_reference(tmp_path, arch, style, weighted):
    """float32: every hidden state and output within the parity tolerance; bfloat16: within
    the bfloat16 tests' relative error of each other and of transformers' float32."""
    assert kernels._grouped_bf16_ok(32, 32, 128, SAFE_GROUPS["num_conv_pos_embedding_groups"])
    hf = build_hf(arch, hf_config(style, weighted, **SAFE_GROUPS))
    folder = save_hf(hf, tmp_path / arch)
    torch.manual_seed(3)
    x = torch.randn(2, 24000)
    mask = torch.ones(2, 24000, dtype=torch.long)
    mask[1, 15000:] = 0
    with torch.no_grad():
        oracle = hf(x, attention_mask=mask, output_hidden_states=True)
    for dtype in ("float32", "bfloat16"):
        reference = load_pretrained(folder, dtype=dtype, fast=False).model
        quick = accelerate(copy.deepcopy(reference))
        assert fast_modules(quick) and not fast_modules(reference)
        xd = x.to(getattr(torch, dtype))
        with torch.inference_mode():
            outs = [m(xd, attention_mask=mask, output_hidden_states=True) for m in (reference, quick)]
        for i, (a, b, t) in enumerate(zip(outputs(outs[0]), outputs(outs[1]), outputs(oracle))):
            assert a.dtype == b.dtype == getattr(torch, dtype)
            if dtype == "float32":
                assert max_diff(a, b) <= TOL, f"output {i}"
            else:
                assert rel(a, b) < BF16_TOL, f"output {i}"
                assert rel(t, a) < BF16_TOL and rel(t, b) < BF16_TOL, f"output {i}"


@pytest.mark.parametrize("name", ["wav2vec2-base-960h", "hubert-large-ls960-ft"])
def test_fast_path_agrees_with_reference_plain_attention(tmp_path, name):
    """Wav2Vec2 / HuBERT (plain attention, stable-LN and post-LN, with and without the
    feature-projection LayerNorm's families): fast vs reference in float32 and bfloat16."""
    write_checkpoint(tmp_path / name, name, sizes=SAFE_GROUPS)
    torch.manual_seed(4)
    x = torch.randn(1, 20000)
    for dtype, check in (("float32", lambda a, b: max_diff(a, b) <= TOL),
                         ("bfloat16", lambda a, b: rel(a, b) < BF16_TOL)):
        reference = load_pretrained(tmp_path / name, dtype=dtype, fast=False).model
        quick = accelerate(copy.deepcopy(reference))
        assert type(quick.backbone.encoder.layers[0].attention) is fast.FastSelfAttention
        assert type(reference.backbone.encoder.layers[0].attention) is SelfAttention
        with torch.inference_mode():
            a = reference(x.to(getattr(torch, dtype)), output_hidden_states=True)
            b = quick(x.to(getattr(torch, dtype)), output_hidden_states=True)
        for u, v in zip(outputs(a), outputs(b)):
            assert check(u, v)
