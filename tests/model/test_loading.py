"""Checkpoint loading: both weight-norm key styles, .bin and .safetensors, the Hub cache,
clear ModelLoadErrors for bad checkpoints, save_pretrained output that transformers loads,
dtype choice, and no transformers import at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from wavlm_live.model import (ModelLoadError, PreprocessorConfig, WavLMConfig, WavLMForAudioFrameClassification,
                              WavLMForCTC, WavLMForXVector, WavLMModel, accelerate, load_pretrained, save_pretrained)

from .conftest import VOCAB, max_diff, write_tokenizer

POS = "wavlm.encoder.pos_conv_embed.conv."
NEW_G, NEW_V = POS + "parametrizations.weight.original0", POS + "parametrizations.weight.original1"


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_state(folder: Path, fn) -> None:
    path = folder / "model.safetensors"
    state = fn(load_file(str(path)))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})


def edit_json(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def outputs_match(hf, ours, n=20000, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(1, n)
    with torch.no_grad():
        ref, out = hf(x), ours(x)
    assert max_diff(ref.logits, out.logits) <= 1e-4
    if hasattr(ref, "embeddings"):
        assert max_diff(ref.embeddings, out.embeddings) <= 1e-4


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_old_weight_norm_key_names_load_and_match(hf_checkpoint, tmp_path, fmt):
    """Older Hub files store the positional conv as weight_g / weight_v (and often ship
    pytorch_model.bin, masked_spec_embed and pre-training quantizer keys)."""
    hf, folder = hf_checkpoint("WavLMForCTC")
    old = copy_checkpoint(folder, tmp_path / "old")
    state = load_file(str(old / "model.safetensors"))
    state[POS + "weight_g"] = state.pop(NEW_G)
    state[POS + "weight_v"] = state.pop(NEW_V)
    state["wavlm.masked_spec_embed"] = torch.rand(32)
    state["quantizer.codevectors"] = torch.rand(1, 640, 128)
    state["quantizer.weight_proj.weight"] = torch.rand(640, 16)
    state["project_q.weight"] = torch.rand(256, 256)
    state["project_hid.bias"] = torch.rand(256)
    (old / "model.safetensors").unlink()
    if fmt == "bin":
        torch.save(state, old / "pytorch_model.bin")
    else:
        save_file(state, str(old / "model.safetensors"), metadata={"format": "pt"})
    pre = load_pretrained(old)
    outputs_match(hf, pre.model)
    # the folded weight really is g * v / ||v||: a different g changes the outputs
    state[POS + "weight_g"] = state[POS + "weight_g"] * 2
    if fmt == "bin":
        torch.save(state, old / "pytorch_model.bin")
    else:
        save_file(state, str(old / "model.safetensors"), metadata={"format": "pt"})
    changed = load_pretrained(old).model
    with torch.no_grad():
        x = torch.randn(1, 8000)
        assert max_diff(changed(x).logits, pre.model(x).logits) > 1e-3


def test_pretrained_fields(hf_checkpoint):
    _, folder = hf_checkpoint("WavLMForAudioFrameClassification", "large", True)
    pre = load_pretrained(str(folder))
    assert pre.task == "frames" and isinstance(pre.model, WavLMForAudioFrameClassification)
    assert pre.vocab is None and pre.decoder is None
    assert pre.source == str(folder) and pre.path == folder.resolve()
    assert pre.device == torch.device("cpu") and pre.dtype == torch.float32
    assert pre.preprocessor == PreprocessorConfig(do_normalize=False)
    assert pre.config.do_stable_layer_norm and pre.config.use_weighted_layer_sum
    _, folder = hf_checkpoint("WavLMForXVector")
    pre = load_pretrained(folder, expected_task="xvector")
    assert pre.task == "xvector" and isinstance(pre.model, WavLMForXVector)
    with torch.no_grad():
        out = pre.model(torch.randn(2, 6000))
    assert out.embeddings.shape == (2, 12) and out.logits.shape == (2, 12) and out.hidden_states is None


def test_bf16_load_is_close_to_float32(hf_checkpoint):
    hf, folder = hf_checkpoint("WavLMForCTC", "large")
    pre = load_pretrained(folder, dtype="bfloat16")
    assert pre.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in pre.model.parameters())
    torch.manual_seed(0)
    x = torch.randn(1, 32000)
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True)
        out = pre.model(x.bfloat16(), output_hidden_states=True)
    assert out.logits.dtype == torch.bfloat16
    for a, b in zip(ref.hidden_states + (ref.logits,), out.hidden_states + (out.logits,)):
        rel = ((a - b.float()).norm() / a.norm()).item()
        assert rel < 3e-2
    auto = load_pretrained(folder, dtype="auto")
    from wavlm_live.model import resolve_dtype
    assert auto.dtype == resolve_dtype("auto", "cpu")


def bad_ctc(tmp_path, hf_checkpoint) -> Path:
    return copy_checkpoint(hf_checkpoint("WavLMForCTC")[1], tmp_path / "bad")


def _missing_key(f):
    edit_state(f, lambda s: {k: v for k, v in s.items() if k != "lm_head.bias"})


def _unexpected_key(f):
    edit_state(f, lambda s: {**s, "wavlm.encoder.extra.weight": torch.zeros(3)})


def _wrong_shape(f):
    edit_state(f, lambda s: {**s, "lm_head.weight": torch.zeros(12, 33)})


def _truncated(f):
    data = (f / "model.safetensors").read_bytes()
    (f / "model.safetensors").write_bytes(data[: len(data) // 2])


def _corrupt_bin(f):
    (f / "model.safetensors").unlink()
    (f / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip archive")


def _no_weights(f):
    (f / "model.safetensors").unlink()


def _no_config(f):
    (f / "config.json").unlink()


def _no_vocab(f):
    (f / "vocab.json").unlink()


def _unknown_arch(f):
    edit_json(f / "config.json", architectures=["WavLMForPreTraining"])


def _other_model_type(f):
    edit_json(f / "config.json", model_type="sew-d", architectures=["SEWDForCTC"])


def _family_mismatch(f):
    edit_json(f / "config.json", model_type="wav2vec2")  # architectures still WavLMForCTC


def _weights_of_another_family(f):
    edit_json(f / "config.json", model_type="wav2vec2", architectures=["Wav2Vec2ForCTC"])


def _fewer_layers(f):
    edit_json(f / "config.json", num_hidden_layers=1)


def _wider(f):
    edit_json(f / "config.json", intermediate_size=48)


def _bad_value(f):
    edit_json(f / "config.json", feat_extract_norm="batch")


def _bad_json(f):
    (f / "config.json").write_text("{")


def _rate(f):
    edit_json(f / "preprocessor_config.json", sampling_rate=8000)


@pytest.mark.parametrize("tamper,match", [
    (_missing_key, r"missing keys: lm_head\.bias"),
    (_unexpected_key, r"unexpected keys: wavlm\.encoder\.extra\.weight"),
    (_wrong_shape, r"mis-shaped keys .*lm_head\.weight \(12, 33\) vs \(12, 32\)"),
    (_truncated, r"model\.safetensors is truncated or corrupt"),
    (_corrupt_bin, r"pytorch_model\.bin is truncated or corrupt"),
    (_no_weights, r"has no model\.safetensors or pytorch_model\.bin"),
    (_no_config, r"has no config\.json"),
    (_no_vocab, r"without vocab\.json"),
    (_unknown_arch, r"unknown architecture \(WavLMForPreTraining\)"),
    (_other_model_type, r"bad config\.json .*model_type"),
    (_family_mismatch, r"'model_type' is 'wav2vec2', but the architecture WavLMForCTC is a WavLM model"),
    (_weights_of_another_family, r"do not match its config\.json for Wav2Vec2ForCTC.*unexpected keys: wavlm\."),
    (_fewer_layers, r"do not match its config\.json.*unexpected keys: wavlm\.encoder\.layers\.1\."),
    (_wider, r"do not match its config\.json.*mis-shaped keys.*feed_forward"),
    (_bad_value, r"bad config\.json .*feat_extract_norm"),
    (_bad_json, r"bad config\.json .*not valid JSON"),
    (_rate, r"8000 Hz"),
])
def test_bad_checkpoints_raise_model_load_error(tmp_path, hf_checkpoint, tamper, match):
    folder = bad_ctc(tmp_path, hf_checkpoint)
    tamper(folder)
    with pytest.raises(ModelLoadError, match=match) as info:
        load_pretrained(folder)
    assert isinstance(info.value, ValueError)
    assert str(folder) in str(info.value)


def test_bad_arguments_raise_model_load_error(tmp_path, hf_checkpoint):
    _, folder = hf_checkpoint("WavLMForCTC")
    with pytest.raises(ModelLoadError, match=r"'ctc' model .*'xvector' model was expected"):
        load_pretrained(folder, expected_task="xvector")
    with pytest.raises(ModelLoadError, match="expected_task"):
        load_pretrained(folder, expected_task="asr")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_pretrained(tmp_path / "no" / "such" / "folder")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_pretrained(folder / "config.json")
    with pytest.raises(ModelLoadError, match="dtype"):
        load_pretrained(folder, dtype="int4")
    if torch.cuda.is_available():
        assert load_pretrained(folder, device="cuda").device.type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_pretrained(folder, device="cuda")


def make_hub_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """A huggingface_hub cache entry for ``repo_id`` (refs/main -> one snapshot) holding ``files``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy(src, snap / name)
    return snap


def test_hub_id_from_cache_and_offline_errors(tmp_path, hf_checkpoint, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hf, folder = hf_checkpoint("WavLMForCTC")
    with pytest.raises(ModelLoadError, match=r"'someone/wavlm-tiny' is not in the local Hugging Face cache.*"
                                             r"pass a local folder"):
        load_pretrained("someone/wavlm-tiny", local_files_only=True)
    # an old-style repository: pytorch_model.bin only, legacy tokenizer files
    src = copy_checkpoint(folder, tmp_path / "src")
    torch.save(load_file(str(src / "model.safetensors")), src / "pytorch_model.bin")
    names = ["config.json", "pytorch_model.bin", "preprocessor_config.json", "vocab.json", "tokenizer_config.json"]
    snap = make_hub_cache(tmp_path / "hub", "someone/wavlm-tiny", {n: src / n for n in names})
    pre = load_pretrained("someone/wavlm-tiny", local_files_only=True)
    assert pre.source == "someone/wavlm-tiny" and pre.path == snap and pre.task == "ctc"
    assert pre.vocab.tokens[: len(VOCAB)] == tuple(VOCAB)
    outputs_match(hf, pre.model)
    # a cached repository without weights
    make_hub_cache(tmp_path / "hub", "someone/no-weights", {"config.json": src / "config.json"})
    with pytest.raises(ModelLoadError, match="weights of model 'someone/no-weights' are not in the local"):
        load_pretrained("someone/no-weights", local_files_only=True)


@pytest.mark.parametrize("arch,style,weighted", [("WavLMForCTC", "base", False),
                                                 ("WavLMForAudioFrameClassification", "large", True),
                                                 ("WavLMForXVector", "base", True)])
def test_save_pretrained_loads_in_transformers(tmp_path, hf_checkpoint, arch, style, weighted):
    import transformers

    _, folder = hf_checkpoint(arch, style, weighted)
    pre = load_pretrained(folder)
    out = save_pretrained(pre.model, tmp_path / "saved", preprocessor=pre.preprocessor, vocab=pre.vocab)
    assert out == tmp_path / "saved"
    assert json.loads((out / "config.json").read_text())["architectures"] == [arch]
    hf, info = getattr(transformers, arch).from_pretrained(str(out), output_loading_info=True)
    # the AM-softmax loss weight is training-only and not saved
    assert set(info["missing_keys"]) <= {"objective.weight"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    outputs_match(hf.eval(), pre.model, n=24000)
    again = load_pretrained(out)
    outputs_match(hf, again.model, n=24000)
    assert transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(out)).do_normalize is False
    if arch == "WavLMForCTC":
        assert again.vocab == pre.vocab
        tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(out))
        assert tok.convert_ids_to_tokens(list(range(len(pre.vocab)))) == list(pre.vocab.tokens)


def test_save_pretrained_of_a_freshly_trained_model(tmp_path):
    """What the demo-training helper does: build our model from a config, train, save;
    transformers loads the result with the same outputs."""
    import transformers

    config = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         conv_dim=(16,) * 7, vocab_size=len(VOCAB))
    torch.manual_seed(0)
    model = WavLMForCTC(config)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 8000)
    loss = model(x).logits.logsumexp(-1).mean()
    loss.backward()
    opt.step()
    write_tokenizer(tmp_path / "tok")
    from wavlm_live.model import CTCVocabulary
    save_pretrained(model.eval(), tmp_path / "ckpt", vocab=CTCVocabulary.from_files(tmp_path / "tok"))
    hf = transformers.WavLMForCTC.from_pretrained(str(tmp_path / "ckpt")).eval()
    outputs_match(hf, model)
    with pytest.raises(ValueError, match="vocab"):
        save_pretrained(model, tmp_path / "x")
    with pytest.raises(TypeError, match="WavLMModel"):
        save_pretrained(WavLMModel(config), tmp_path / "y")


def test_models_train(tmp_path):
    """Gradients reach every parameter of every head."""
    config = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         conv_dim=(16,) * 7, use_weighted_layer_sum=True, tdnn_dim=(8, 8, 8, 8, 12),
                         xvector_output_dim=6)
    for cls in (WavLMForCTC, WavLMForAudioFrameClassification, WavLMForXVector):
        model = cls(config).train()
        out = model(torch.randn(2, 6000), attention_mask=torch.ones(2, 6000, dtype=torch.long))
        loss = out.logits.square().mean() + (out.embeddings.square().mean() if out.embeddings is not None else 0)
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (cls.__name__, name)


@pytest.mark.slow  # starts a process
def test_no_transformers_import_at_run_time(tmp_path, hf_checkpoint):
    """Importing the package, loading each task model, running it and decoding never imports
    transformers; with HF_HUB_OFFLINE an uncached Hub id fails with one clear sentence."""
    folders = {arch: str(hf_checkpoint(arch)[1]) for arch in
               ("WavLMForCTC", "WavLMForAudioFrameClassification", "WavLMForXVector")}
    script = textwrap.dedent(f"""
        import sys, torch
        import wavlm_live.model as m
        folders = {folders!r}
        pre = m.load_pretrained(folders["WavLMForCTC"])
        logits = pre.model(torch.randn(1, 16000)).logits[0]
        pre.decoder.decode(logits)
        m.load_pretrained(folders["WavLMForAudioFrameClassification"]).model(torch.randn(1, 16000))
        m.load_pretrained(folders["WavLMForXVector"]).model(torch.randn(1, 16000))
        try:
            m.load_pretrained("someone/not-cached")
        except m.ModelLoadError as e:
            print("ERROR:", e)
        assert "transformers" not in sys.modules, "transformers was imported"
        print("OK")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")
    assert "ERROR: model 'someone/not-cached' is not in the local Hugging Face cache" in proc.stdout


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loading_inside_inference_mode(hf_checkpoint, dtype):
    """The module docstring's usage, with the load inside ``torch.inference_mode()`` too: the
    weights are normal tensors (the derived-weight cache needs their version counters), the
    outputs equal a model loaded outside, and the model still trains afterwards."""
    _, folder = hf_checkpoint("WavLMForXVector", "base", True)
    torch.manual_seed(0)
    x = torch.randn(1, 12000).to(getattr(torch, dtype))
    with torch.inference_mode():
        pre = load_pretrained(folder, dtype=dtype)
        first = pre.model(x, output_hidden_states=True)
        again = pre.model(x, output_hidden_states=True)  # served from the cache this time
    assert not any(p.is_inference() for p in pre.model.parameters())
    outside = load_pretrained(folder, dtype=dtype)
    with torch.inference_mode():
        ref = outside.model(x, output_hidden_states=True)
    for a, b, c in zip(ref.hidden_states + (ref.embeddings,), first.hidden_states + (first.embeddings,),
                       again.hidden_states + (again.embeddings,)):
        assert torch.equal(a, b) and torch.equal(a, c)
    if dtype == "float32":
        out = pre.model.train()(x)
        (out.embeddings.square().mean() + out.logits.square().mean()).backward()
        assert all(p.grad is not None for p in pre.model.parameters() if p.requires_grad)


def test_model_built_inside_inference_mode_runs_and_sees_weight_changes(hf_checkpoint):
    """Parameters that are inference tensors (a model built by hand under inference_mode) have
    no version counter: the derived weights are rebuilt per call, so in-place changes count."""
    _, folder = hf_checkpoint("WavLMForCTC")
    ref = load_pretrained(folder, dtype="bfloat16").model
    x = torch.randn(1, 8000).bfloat16()
    with torch.inference_mode():
        model = accelerate(WavLMForCTC(ref.config).bfloat16().eval())  # the fast path's cache is under test
        model.load_state_dict(ref.state_dict())
        assert all(p.is_inference() for p in model.parameters())
        before = model(x).logits
        assert torch.equal(before, ref(x).logits)
        model.wavlm.encoder.layers[0].attention.q_proj.weight.mul_(2)
        model.wavlm.encoder.layers[0].feed_forward.intermediate_dense.weight.mul_(2)
        after = model(x).logits
    assert max_diff(before, after) > 1e-3
