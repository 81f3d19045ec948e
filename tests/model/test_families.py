"""Wav2Vec2 (XLS-R) and HuBERT checkpoints in the exact file layouts of public Hub models,
loaded through ``load_pretrained``: parity with transformers (float32, max abs diff <= 1e-4
for every hidden state and every head output, on real speech), both weight formats, the
old weight-norm keys, the bfloat16 / oneDNN CPU fast paths, saving, and clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wavlm_live.model import (ModelLoadError, WavLMForAudioFrameClassification, WavLMForCTC,
                              WavLMForSequenceClassification, WavLMForXVector, load_pretrained, save_pretrained)
from wavlm_live.model.attention import SelfAttention, WavLMAttention

from .conftest import max_diff
from .hub_layouts import LAYOUTS, write_checkpoint
from .test_parity import compare

TOL = 1e-4
DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
HEADS = {"ForCTC": WavLMForCTC, "ForAudioFrameClassification": WavLMForAudioFrameClassification,
         "ForXVector": WavLMForXVector, "ForSequenceClassification": WavLMForSequenceClassification}
FAMILY = {"wav2vec2": "Wav2Vec2", "hubert": "HuBERT"}


def speech(seconds: float, clip: str = "0870") -> torch.Tensor:
    """``[1, seconds * 16000]`` float32 real speech (a LibriVox test clip), normalised as the
    checkpoints' feature extractors do (do_normalize)."""
    audio, rate = sf.read(DATA / f"sense_and_sensibility_01_austen_64kb-{clip}.wav", dtype="float32")
    assert rate == 16000
    x = torch.from_numpy(audio[: int(seconds * 16000)])[None]
    return (x - x.mean()) / torch.sqrt(x.var(correction=0) + 1e-7)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``checkpoint(layout, fmt="safetensors", old=False) -> (transformers model, folder)``."""
    cache: dict = {}

    def make(name: str, fmt: str = "safetensors", old: bool = False):
        key = (name, fmt, old)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{name}-{fmt}-{int(old)}")
            cache[key] = (write_checkpoint(folder, name, fmt=fmt, old_weight_norm=old, seed=len(cache)), folder)
        return cache[key]

    return make


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("fmt,old", [("safetensors", False), ("bin", True), ("safetensors", True)])
def test_hub_layouts_match_transformers(checkpoint, name, fmt, old):
    hf, folder = checkpoint(name, fmt, old)
    config_json = json.loads((folder / "config.json").read_text())
    pre = load_pretrained(folder)
    arch = config_json["architectures"][0]
    assert pre.architecture == arch
    assert type(pre.model) is HEADS[arch[arch.index("For"):]]
    assert pre.family == FAMILY[config_json["model_type"]]
    backbone = getattr(pre.model, config_json["model_type"])
    assert backbone is pre.model.backbone
    attention = backbone.encoder.layers[0].attention
    assert isinstance(attention, SelfAttention) and not isinstance(attention, WavLMAttention)
    assert pre.config.do_stable_layer_norm == config_json["do_stable_layer_norm"]
    for seconds in (0.5, 3.0):
        compare(hf, pre.model, speech(seconds))


@pytest.mark.parametrize("name", ["wav2vec2-large-960h-lv60-self", "hubert-large-ls960-ft", "xls-r-300m-ru",
                                  "wav2vec2-base-superb-sv", "wav2vec2-base-superb-sd", "wav2vec2-base-superb-ks",
                                  "hubert-large-superb-er"])
def test_padded_batch_with_attention_mask_matches(checkpoint, name):
    """Right-padded batches with a sample mask (what return_attention_mask checkpoints get):
    zeroed padding before the positional conv, key padding, x-vector pooling lengths."""
    hf, folder = checkpoint(name)
    model = load_pretrained(folder).model
    lengths = (48000, 20123, 31000)
    x = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, (n, clip) in enumerate(zip(lengths, ("0870", "0880", "0890"))):
        x[i, :n] = speech(n / 16000, clip)[0]
        mask[i, :n] = 1
    compare(hf, model, x, mask)


def test_hubert_without_feature_projection_layer_norm(tmp_path):
    """HubertConfig's feat_proj_layer_norm false (DistilHuBERT-style): no LayerNorm before the
    projection, and no such keys in the checkpoint."""
    hf = write_checkpoint(tmp_path / "h", "hubert-large-ls960-ft")
    config = json.loads((tmp_path / "h" / "config.json").read_text())
    import transformers

    config["feat_proj_layer_norm"] = False
    hf_config = transformers.HubertConfig.from_dict({k: v for k, v in config.items() if not k.startswith("_")})
    torch.manual_seed(3)
    hf = transformers.HubertForCTC(hf_config).eval()
    hf.save_pretrained(str(tmp_path / "h2"))
    for f in ("config.json", "preprocessor_config.json", "vocab.json", "tokenizer_config.json",
              "special_tokens_map.json"):
        shutil.copy(tmp_path / "h" / f, tmp_path / "h2" / f)
    (tmp_path / "h2" / "config.json").write_text(json.dumps(config))
    pre = load_pretrained(tmp_path / "h2")
    assert not hasattr(pre.model.hubert.feature_projection, "layer_norm")
    assert not any("feature_projection.layer_norm" in k for k in pre.model.state_dict())
    compare(hf, pre.model, speech(2.0))


@pytest.mark.parametrize("name", ["wav2vec2-base-960h", "hubert-large-ls960-ft", "xls-r-300m-ru",
                                  "wav2vec2-base-superb-sv"])
def test_bf16_fast_paths_apply_and_stay_close(checkpoint, name):
    """bfloat16 on the CPU: the stacked q/k/v projection is cached (pre-packed), attention takes
    the float32-score path, and every hidden state and output stays within 3% relative RMS
    error of transformers' float32."""
    from wavlm_live.model import kernels

    hf, folder = checkpoint(name)
    pre = load_pretrained(folder, dtype="bfloat16")
    x = speech(3.0)
    with torch.inference_mode():
        out = pre.model(x.bfloat16(), output_hidden_states=True)
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True)
    attention = pre.model.backbone.encoder.layers[0].attention
    hit = kernels._derived.get(attention.q_proj.weight)
    assert hit is not None, "the stacked projection was not cached"
    weight, _, packed = hit[1]
    assert weight.shape == (3 * pre.config.hidden_size, pre.config.hidden_size)
    if kernels._packing_ok():
        assert packed is not weight  # oneDNN's blocked layout
    pairs = list(zip(ref.hidden_states, out.hidden_states)) + [(ref.logits, out.logits)]
    if hasattr(ref, "embeddings"):
        pairs.append((ref.embeddings, out.embeddings))
    for a, b in pairs:
        assert b.dtype == torch.bfloat16
        assert ((a - b.float()).norm() / a.norm()).item() < 3e-2


def test_autograd_path_matches_inference_path(checkpoint):
    """Plain attention under autograd (separate q, k, v linears, SDPA) equals the inference path."""
    hf, folder = checkpoint("wav2vec2-base-superb-sd")
    model = load_pretrained(folder).model
    x = speech(2.0)
    with torch.no_grad():
        fast = model(x, output_hidden_states=True)
    with torch.enable_grad():
        slow = model(x, output_hidden_states=True)
    assert slow.logits.requires_grad
    for a, b in zip(fast.hidden_states + (fast.logits,), slow.hidden_states + (slow.logits,)):
        assert max_diff(a, b.detach()) <= TOL


@pytest.mark.parametrize("name", ["wav2vec2-base-960h", "hubert-large-ls960-ft", "wav2vec2-base-superb-sv",
                                  "wav2vec2-base-superb-sd"])
def test_save_pretrained_writes_the_family_that_transformers_loads(tmp_path, checkpoint, name):
    import transformers

    hf, folder = checkpoint(name)
    pre = load_pretrained(folder)
    out = save_pretrained(pre.model, tmp_path / "saved", preprocessor=pre.preprocessor, vocab=pre.vocab)
    config = json.loads((out / "config.json").read_text())
    arch = json.loads((folder / "config.json").read_text())["architectures"][0]
    assert config["architectures"] == [arch] and config["model_type"] == pre.config.model_type
    again = getattr(transformers, arch).from_pretrained(str(out)).eval()
    compare(again, pre.model, speech(2.0))
    assert load_pretrained(out).config == pre.config


def _edit(folder: Path, **changes) -> None:
    path = folder / "config.json"
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("changes,match", [
    ({"add_adapter": True}, r"config field 'add_adapter' is True, but adapter layers after the encoder"),
    ({"adapter_attn_dim": 16}, r"config field 'adapter_attn_dim' is 16, but per-layer attention adapters"),
    ({"model_type": "wav2vec2-conformer", "architectures": ["Wav2Vec2ConformerForCTC"]},
     r"'model_type' is 'wav2vec2-conformer'; supported model types are \"wavlm\", \"wav2vec2\", \"hubert\""),
    ({"architectures": ["Wav2Vec2ForPreTraining"]}, r"unknown architecture \(Wav2Vec2ForPreTraining\)"),
    ({"architectures": ["HubertForCTC"]}, r"'model_type' is 'wav2vec2', but the architecture HubertForCTC is a "
                                          r"HuBERT model"),
    ({"feat_proj_layer_norm": False, "model_type": "hubert", "architectures": ["HubertForCTC"],
      "conv_pos_batch_norm": True}, r"'conv_pos_batch_norm' is True"),
])
def test_unsupported_fields_are_refused_in_one_sentence(tmp_path, checkpoint, changes, match):
    _, folder = checkpoint("xls-r-300m-ru")
    bad = shutil.copytree(folder, tmp_path / "bad")
    _edit(bad, **changes)
    with pytest.raises(ModelLoadError, match=match) as info:
        load_pretrained(bad)
    assert "\n" not in str(info.value)


def test_hubert_has_only_a_ctc_head_to_save(tmp_path):
    from wavlm_live.model import WavLMConfig

    config = WavLMConfig(model_type="hubert", hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64, conv_dim=(16,) * 7)
    with pytest.raises(ValueError, match="transformers has no HubertForXVector"):
        save_pretrained(WavLMForXVector(config), tmp_path / "x")
    with pytest.raises(ValueError, match="only HuBERT checkpoints can drop"):
        WavLMConfig(model_type="wav2vec2", feat_proj_layer_norm=False)


def test_config_fields_of_the_layouts():
    from wavlm_live.model import WavLMConfig

    base = WavLMConfig.from_dict(LAYOUTS["wav2vec2-base-960h"][0])
    assert (base.model_type, base.family, base.relative_position_bias) == ("wav2vec2", "Wav2Vec2", False)
    assert base.feat_extract_norm == "group" and not base.do_stable_layer_norm and not base.conv_bias
    xlsr = WavLMConfig.from_dict(LAYOUTS["xls-r-300m-ru"][0])
    assert xlsr.do_stable_layer_norm and xlsr.feat_extract_norm == "layer" and xlsr.conv_bias
    assert (xlsr.vocab_size, xlsr.pad_token_id, xlsr.hidden_size) == (38, 35, 1024)
    hubert = WavLMConfig.from_dict(LAYOUTS["hubert-large-ls960-ft"][0])
    assert hubert.family == "HuBERT" and hubert.feat_proj_layer_norm
    assert "num_buckets" not in base.to_dict() and "feat_proj_layer_norm" in hubert.to_dict()
    assert np.isclose(base.layer_norm_eps, 1e-5)


@pytest.mark.parametrize("name", ["wav2vec2-base-960h", "hubert-large-ls960-ft", "xls-r-300m-ru", "xlsr-53-zh-cn"])
def test_greedy_decode_of_the_logits_matches_the_tokenizer(checkpoint, name):
    """The checkpoint's own tokenizer files, read by transformers' Wav2Vec2CTCTokenizer and by
    our loader, decode the model's argmax ids to the same text and offsets."""
    from transformers import Wav2Vec2CTCTokenizer

    from .test_ctc import assert_same_decode

    hf, folder = checkpoint(name)
    pre = load_pretrained(folder)
    tok = Wav2Vec2CTCTokenizer.from_pretrained(str(folder))
    assert pre.vocab.tokens[:pre.config.vocab_size] == tuple(tok.convert_ids_to_tokens(list(range(pre.config.vocab_size))))
    assert pre.vocab.blank_id == tok.pad_token_id == pre.config.pad_token_id
    for clip in ("0870", "0920"):
        with torch.no_grad():
            logits = pre.model(speech(4.0, clip)).logits[0]
        assert_same_decode(tok, pre.decoder, logits.argmax(-1).tolist())
