"""CUDA checks (run on a lent GPU machine: ``pytest -m gpu tests/model``): the same tiny
checkpoints on the GPU in float32 and bfloat16 against transformers on the CPU."""

from __future__ import annotations

import pytest
import torch

from wavlm_live.model import load_pretrained

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (gpu marker)")]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float().cpu() - b.float().cpu()).norm() / a.float().cpu().norm()).item()


@pytest.mark.parametrize("arch,style,weighted", [("WavLMForCTC", "base", False),
                                                 ("WavLMForAudioFrameClassification", "large", True),
                                                 ("WavLMForXVector", "base", True)])
def test_cuda_matches_transformers_cpu(hf_checkpoint, arch, style, weighted):
    hf, folder = hf_checkpoint(arch, style, weighted)
    torch.manual_seed(0)
    x = torch.randn(2, 272000)  # 17 s: buckets saturate
    mask = torch.ones(2, 272000, dtype=torch.long)
    mask[1, 200000:] = 0
    with torch.no_grad():
        ref = hf(x, attention_mask=mask, output_hidden_states=True)
    for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 3e-2)):  # fp32 tolerance: TF32 convolutions
        pre = load_pretrained(folder, device="cuda", dtype=dtype)
        assert pre.device.type == "cuda" and next(pre.model.parameters()).is_cuda
        with torch.no_grad():
            out = pre.model(x.cuda().to(dtype), attention_mask=mask.cuda(), output_hidden_states=True)
        for a, b in zip(ref.hidden_states, out.hidden_states):
            assert rel(a, b) < tol
        assert rel(ref.logits, out.logits) < tol
        if out.embeddings is not None:
            assert rel(ref.embeddings, out.embeddings) < tol


@pytest.mark.parametrize("layout", ["wav2vec2-base-960h", "xls-r-300m-ru", "hubert-large-ls960-ft",
                                    "wav2vec2-base-superb-sv"])
def test_cuda_other_families_match_transformers_cpu(tmp_path, layout):
    """Wav2Vec2 / XLS-R / HuBERT in their Hub layouts (plain attention on CUDA's SDPA kernels)."""
    from .hub_layouts import write_checkpoint

    hf = write_checkpoint(tmp_path / layout, layout)
    torch.manual_seed(0)
    x = torch.randn(2, 96000)
    mask = torch.ones(2, 96000, dtype=torch.long)
    mask[1, 70000:] = 0
    with torch.no_grad():
        ref = hf(x, attention_mask=mask, output_hidden_states=True)
    for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 3e-2)):
        pre = load_pretrained(tmp_path / layout, device="cuda", dtype=dtype)
        with torch.no_grad():
            out = pre.model(x.cuda().to(dtype), attention_mask=mask.cuda(), output_hidden_states=True)
        for a, b in zip(ref.hidden_states, out.hidden_states):
            assert rel(a, b) < tol
        assert rel(ref.logits, out.logits) < tol
