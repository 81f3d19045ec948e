"""Identical feature encoders of separately loaded checkpoints are one module, computed once
per window; outputs equal the unshared models'; different encoders stay apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from wavlm_live.engine.tasks import FrameRunner, XVectorRunner
from wavlm_live.model import load_pretrained
from wavlm_live.model.shared import content_key



def _checkpoints(tmp_path, same_encoder: bool):
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=(32,) * 7, num_labels=2, tdnn_dim=(16, 16, 16, 16, 24), xvector_output_dim=8)
    torch.manual_seed(0)
    frames = transformers.WavLMForAudioFrameClassification(transformers.WavLMConfig(**cfg)).eval()
    torch.manual_seed(1)
    xvec = transformers.WavLMForXVector(transformers.WavLMConfig(**cfg)).eval()
    if same_encoder:  # fine-tuning with a frozen feature encoder
        xvec.wavlm.feature_extractor.load_state_dict(frames.wavlm.feature_extractor.state_dict())
    out = {}
    for name, model in (("frames", frames), ("xvector", xvec)):
        model.save_pretrained(tmp_path / name)
        transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / name)
        out[name] = tmp_path / name
    return out


@pytest.mark.parametrize("same", [True, False])
def test_identical_encoders_are_shared_and_computed_once(tmp_path, same):
    paths = _checkpoints(tmp_path, same)
    diar = FrameRunner(load_pretrained(paths["frames"]))
    emb = XVectorRunner(load_pretrained(paths["xvector"]))
    alone = XVectorRunner(load_pretrained(paths["xvector"], share=False))
    enc_d, enc_e = diar.model.backbone.feature_extractor, emb.model.backbone.feature_extractor
    assert (enc_d is enc_e) == same
    assert (content_key(enc_d) == content_key(alone.model.backbone.feature_extractor)) == same
    rng = np.random.default_rng(0)
    window = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    memo = enc_e.shared_memo
    calls, hits = memo.calls, memo.hits
    diar.activity(window)
    got = emb.embed(window)
    assert memo.calls - calls == (2 if same else 1)
    assert memo.hits - hits == (1 if same else 0)  # the x-vector pass reused the diarization's conv output
    np.testing.assert_allclose(got, alone.embed(window), rtol=1e-5, atol=1e-6)  # exact reuse
    other = rng.standard_normal(16000 * 2).astype(np.float32) * 0.1
    diar.activity(window)
    np.testing.assert_allclose(emb.embed(other), alone.embed(other), rtol=1e-5, atol=1e-6)  # a new window is computed
