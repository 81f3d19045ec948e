"""WavLMConfig / PreprocessorConfig reading, validation and transformers compatibility;
frames_for_samples; device and dtype resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wavlm_live.model import (PreprocessorConfig, WavLMConfig, WavLMForCTC, frames_for_samples, resolve_device,
                              resolve_dtype)

# config.json of an early (transformers 4.x) WavLM fine-tune, as Hub files of that time look:
# extra training keys, no num_buckets / max_bucket_distance, "classifier_proj_size", etc.
OLD_STYLE_CONFIG = {
    "_name_or_path": "microsoft/wavlm-base-plus", "activation_dropout": 0.0, "adapter_kernel_size": 3,
    "adapter_stride": 2, "add_adapter": False, "apply_spec_augment": True, "architectures": ["WavLMForCTC"],
    "attention_dropout": 0.1, "bos_token_id": 1, "classifier_proj_size": 256, "codevector_dim": 256,
    "contrastive_logits_temperature": 0.1, "conv_bias": False, "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2], "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": False, "diversity_loss_weight": 0.1, "do_stable_layer_norm": False, "eos_token_id": 2,
    "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0, "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1, "feat_quantizer_dropout": 0.0, "final_dropout": 0.0, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout": 0.1, "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "layerdrop": 0.1,
    "mask_channel_length": 10, "mask_channel_min_space": 1, "mask_channel_other": 0.0, "mask_channel_prob": 0.0,
    "mask_channel_selection": "static", "mask_feature_length": 10, "mask_feature_prob": 0.0,
    "mask_time_length": 10, "mask_time_min_space": 1, "mask_time_other": 0.0, "mask_time_prob": 0.05,
    "mask_time_selection": "static", "model_type": "wavlm", "num_adapter_layers": 3, "num_attention_heads": 12,
    "num_codevector_groups": 2, "num_codevectors_per_group": 320, "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128, "num_ctc_classes": 80, "num_feat_extract_layers": 7, "num_hidden_layers": 12,
    "num_negatives": 100, "output_hidden_size": 768, "pad_token_id": 0, "proj_codevector_dim": 256,
    "replace_prob": 0.5, "tokenizer_class": "Wav2Vec2CTCTokenizer", "torch_dtype": "float32",
    "transformers_version": "4.15.0.dev0", "use_weighted_layer_sum": False, "vocab_size": 32,
}


def test_old_style_hub_config_reads_with_defaults():
    c = WavLMConfig.from_dict(OLD_STYLE_CONFIG)
    assert c.architectures == ("WavLMForCTC",)
    assert (c.num_buckets, c.max_bucket_distance) == (320, 800)
    assert c.feat_extract_norm == "group" and c.do_stable_layer_norm is False
    assert c.conv_kernel == (10, 3, 3, 3, 3, 2, 2) and c.vocab_size == 32 and c.num_labels == 2
    assert (c.receptive_field, c.hop) == (400, 320)


def test_transformers_defaults_and_round_trip():
    import transformers

    ref = transformers.WavLMConfig()
    ours = WavLMConfig.from_dict(ref.to_dict())
    assert ours == WavLMConfig(architectures=())
    tiny = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       conv_dim=(16,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True,
                       use_weighted_layer_sum=True, id2label=("speech", "music", "noise"), vocab_size=9,
                       pad_token_id=4, tdnn_dim=(8, 8, 10), tdnn_kernel=(3, 1, 1), tdnn_dilation=(2, 1, 1),
                       xvector_output_dim=6, architectures=("WavLMForXVector",))
    d = json.loads(json.dumps(tiny.to_dict()))
    assert WavLMConfig.from_dict(d) == tiny
    hf = transformers.WavLMConfig.from_dict(d)
    for name in ("hidden_size", "num_hidden_layers", "feat_extract_norm", "do_stable_layer_norm", "vocab_size",
                 "pad_token_id", "use_weighted_layer_sum", "xvector_output_dim", "num_labels"):
        assert getattr(hf, name) == getattr(tiny, name), name
    assert list(hf.tdnn_dim) == [8, 8, 10] and list(hf.conv_dim) == [16] * 7
    assert hf.id2label == {0: "speech", 1: "music", 2: "noise"}
    # transformers builds the same parameter set from it (SpecAugment is off: no masked_spec_embed)
    hf_keys = {k: tuple(v.shape) for k, v in transformers.WavLMForCTC(hf).state_dict().items()}
    ours_keys = {k: tuple(v.shape) for k, v in WavLMForCTC(tiny).state_dict().items()}
    pos = "wavlm.encoder.pos_conv_embed.conv."
    assert hf_keys.pop(pos + "parametrizations.weight.original0") == (1, 1, 128)
    assert hf_keys.pop(pos + "parametrizations.weight.original1") == ours_keys.pop(pos + "weight")
    assert hf_keys == ours_keys


@pytest.mark.parametrize("field,value,match", [
    ("feat_extract_norm", "batch", "feat_extract_norm"),
    ("hidden_act", "swishy", "hidden_act"),
    ("feat_extract_activation", "tanh", "feat_extract_activation"),
    ("conv_kernel", [10, 3, 3], "conv_kernel"),
    ("num_attention_heads", 7, "num_attention_heads"),
    ("num_conv_pos_embedding_groups", 5, "num_conv_pos_embedding_groups"),
    ("hidden_size", 0, "hidden_size"),
    ("num_hidden_layers", True, "num_hidden_layers"),
    ("conv_bias", "no", "conv_bias"),
    ("layer_norm_eps", -1.0, "layer_norm_eps"),
    ("tdnn_kernel", [5, 3], "tdnn_kernel"),
    ("add_adapter", True, "add_adapter"),
    ("model_type", "wav2vec2-conformer", "model_type"),
    ("model_type", "data2vec-audio", "model_type"),
    ("adapter_attn_dim", 16, "adapter_attn_dim"),
    ("conv_pos_batch_norm", True, "conv_pos_batch_norm"),
    ("num_feat_extract_layers", 6, "num_feat_extract_layers"),
    ("num_labels", 3, "num_labels"),
    ("id2label", {"0": "a", "2": "b"}, "id2label"),
    ("pad_token_id", 40, "pad_token_id"),
    ("max_bucket_distance", 10, "max_bucket_distance"),
])
def test_bad_values_name_the_field(field, value, match):
    d = {**OLD_STYLE_CONFIG, "id2label": {"0": "a", "1": "b"}, field: value}
    with pytest.raises(ValueError, match=match):
        WavLMConfig.from_dict(d)


def test_config_from_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(OLD_STYLE_CONFIG))
    assert WavLMConfig.from_json(tmp_path / "config.json") == WavLMConfig.from_dict(OLD_STYLE_CONFIG)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        WavLMConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(TypeError):
        WavLMConfig.from_dict([1, 2])


def test_frames_for_samples_matches_the_conv_chain():
    import transformers

    hf = transformers.WavLMModel(transformers.WavLMConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                                                          intermediate_size=8, conv_dim=[4] * 7,
                                                          num_conv_pos_embedding_groups=2))
    config = WavLMConfig()
    n = torch.arange(400, 40000, 7)
    expected = hf._get_feat_extract_output_lengths(n).tolist()
    assert [frames_for_samples(int(v)) for v in n] == expected
    assert [config.frames_for_samples(int(v)) for v in n] == expected
    assert [frames_for_samples(v) for v in (0, 399, 400, 719, 720, 16000)] == [0, 0, 1, 1, 2, 49]
    assert config.frames_for_samples(399) == 0
    with pytest.raises(TypeError):
        frames_for_samples(400.0)
    with pytest.raises(ValueError):
        frames_for_samples(-1)


def test_preprocessor_normalize_matches_feature_extractor(tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    fe = Wav2Vec2FeatureExtractor(do_normalize=True)
    fe.save_pretrained(str(tmp_path))
    pre = PreprocessorConfig.from_json(tmp_path / "preprocessor_config.json")
    assert pre == PreprocessorConfig(do_normalize=True)
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((3, 8000)) * 0.1 + 0.02).astype(np.float32)
    ref = np.stack([fe(row, sampling_rate=16000, return_tensors="np").input_values[0] for row in batch])
    np.testing.assert_allclose(pre.normalize(batch), ref, atol=1e-5)
    np.testing.assert_allclose(pre.normalize(torch.from_numpy(batch)).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(pre.normalize(batch[0]), ref[0], atol=1e-5)
    off = PreprocessorConfig(do_normalize=False)
    assert off.normalize(batch) is batch
    assert PreprocessorConfig.from_dict(off.to_dict()) == off
    fe2 = Wav2Vec2FeatureExtractor.from_dict(off.to_dict())
    assert fe2.do_normalize is False and fe2.sampling_rate == 16000
    with pytest.raises(TypeError):
        pre.normalize([0.1, 0.2])
    with pytest.raises(ValueError, match="feature_size"):
        PreprocessorConfig(feature_size=2)
    with pytest.raises(ValueError, match="do_normalize"):
        PreprocessorConfig.from_dict({"do_normalize": "yes"})


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype("auto", "cpu") in (torch.bfloat16, torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype(torch.int64)


@pytest.mark.parametrize(("flags", "ratio", "expected"), [
    (False, None, torch.float32),   # no native bf16: no probe, float32
    (True, 0.5, torch.bfloat16),    # bf16 matmul twice as fast: bf16
    (True, 1.5, torch.float32),     # native bf16 that is slower (measured on an Intel Xeon without AMX)
    (True, 0.95, torch.float32),    # within BF16_MIN_GAIN: the exact dtype
])
def test_auto_dtype_on_the_cpu_needs_the_flags_and_a_faster_probe(monkeypatch, flags, ratio, expected):
    from wavlm_live.model import checkpoint

    def probe(reps: int = 5) -> float:
        assert ratio is not None, "probed without native bf16"
        return ratio

    monkeypatch.setattr(checkpoint, "_cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(checkpoint, "bf16_matmul_ratio", probe)
    checkpoint._cpu_has_fast_bf16.cache_clear()
    try:
        assert resolve_dtype("auto", "cpu") is expected
    finally:
        checkpoint._cpu_has_fast_bf16.cache_clear()


def test_bf16_probe_measures_a_ratio_and_auto_follows_it(monkeypatch):
    """The real probe gives a plausible time ratio, and "auto" on this CPU is exactly what
    its flags and that measured ratio say (the probe's own reading, recorded)."""
    from wavlm_live.model import checkpoint

    ratio = checkpoint.bf16_matmul_ratio(reps=2)
    assert 0.05 < ratio < 50
    seen: list[float] = []
    real = checkpoint.bf16_matmul_ratio

    def recorded(reps: int = 5) -> float:
        seen.append(real(reps))
        return seen[-1]

    monkeypatch.setattr(checkpoint, "bf16_matmul_ratio", recorded)
    checkpoint._cpu_has_fast_bf16.cache_clear()
    try:
        got = resolve_dtype("auto", "cpu")
    finally:
        checkpoint._cpu_has_fast_bf16.cache_clear()
    if checkpoint._cpu_bf16_flags():
        assert len(seen) == 1
        assert got is (torch.bfloat16 if seen[0] < checkpoint.BF16_MIN_GAIN else torch.float32)
    else:
        assert seen == [] and got is torch.float32
