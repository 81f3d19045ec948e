"""scripts/train_demo.py runs a few steps of each task on a tiny corpus and writes loadable checkpoints."""

import json

import numpy as np
import pytest
import torch

from wavlm_live.model import (WavLMForAudioFrameClassification, WavLMForCTC, WavLMForXVector, load_pretrained)

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane


def _log(folder):
    return [json.loads(l) for l in (folder / "log.jsonl").read_text().splitlines()]


COMMON = ["--steps", "2", "--eval-every", "2", "--eval-items", "8", "--log-every", "1",
          "--batch-seconds", "6", "--warmup", "1", "--precision", "fp32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus, train_mod):
    folder, _ = tiny_corpus
    out = tmp_path_factory.mktemp("runs")
    base = ["--corpus", str(folder)] + COMMON
    train_mod.main(["ctc", "--out", str(out / "ctc")] + base)
    init = ["--init", str(out / "ctc" / "best")]
    train_mod.main(["diarization", "--out", str(out / "diar")] + base + init)
    train_mod.main(["embeddings", "--out", str(out / "xvec")] + base + init)
    return out


def test_vocabulary_and_decoding(train_mod):
    assert train_mod.VOCAB[:3] == ("[PAD]", "[UNK]", "|") and train_mod.VOCAB[-1] == "'"
    assert len(train_mod.VOCAB) == 30
    ids = train_mod.encode_text("IT'S A")
    assert [train_mod.VOCAB[i] for i in ids] == ["I", "T", "'", "S", "|", "A"]
    # frames: I I blank T ' S | | A  -> repeats merged, blanks dropped
    frames = np.array([ids[0], ids[0], 0, ids[1], ids[2], ids[3], ids[4], ids[4], ids[5]])
    assert train_mod.greedy_decode(frames) == "IT'S A"


def test_pit_bce_ignores_speaker_order(train_mod):
    y = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    logits = 8 * (2 * y - 1)
    valid = torch.ones(1, 3, dtype=torch.bool)
    same = train_mod.pit_bce(logits, y, valid)
    swapped = train_mod.pit_bce(logits.flip(-1), y, valid)
    assert float(same) == pytest.approx(float(swapped)) and float(same) < 1e-3
    # a wrong answer costs more than either order of the right one
    assert float(train_mod.pit_bce(torch.zeros_like(logits), y, valid)) == pytest.approx(np.log(2), rel=1e-5)


def test_ctc_run_writes_a_loadable_checkpoint(runs, train_mod):
    log = _log(runs / "ctc")
    assert [r["step"] for r in log if "step" in r and "loss" in r] == [1, 2]
    ev = [r for r in log if "eval" in r]
    assert ev and 0 <= ev[-1]["cer_seen"] and "cer_unseen" in ev[-1]
    pre = load_pretrained(runs / "ctc" / "best", expected_task="ctc")
    assert isinstance(pre.model, WavLMForCTC)
    assert pre.vocab.tokens == train_mod.VOCAB and pre.vocab.blank_id == 0
    assert pre.preprocessor.do_normalize is True
    x = torch.randn(1, 16000)
    assert pre.model(pre.preprocessor.normalize(x)).logits.shape == (1, 49, 30)


def test_diarization_and_embedding_runs(runs):
    pre = load_pretrained(runs / "diar" / "best", expected_task="frames")
    assert isinstance(pre.model, WavLMForAudioFrameClassification) and pre.model.config.num_labels == 2
    assert pre.model(torch.randn(1, 16000)).logits.shape == (1, 49, 2)
    log = _log(runs / "diar")
    assert any("tensors_copied" in r and r["tensors_copied"] > 0 for r in log)  # initialised from CTC
    assert "der" in [r for r in log if "eval" in r][-1]

    pre = load_pretrained(runs / "xvec" / "best", expected_task="xvector")
    assert isinstance(pre.model, WavLMForXVector)
    out = pre.model(torch.randn(2, 16000))
    assert out.embeddings.shape == (2, 128)
    assert torch.allclose(out.logits, out.embeddings, atol=1e-5)  # classifier kept at identity
    assert "eer" in [r for r in _log(runs / "xvec") if "eval" in r][-1]


def test_diarization_starts_from_the_ctc_encoder(runs):
    ctc = load_pretrained(runs / "ctc" / "best").model.state_dict()
    # the diarization run took 2 small steps from the CTC weights: still close, far from a fresh init
    diar = load_pretrained(runs / "diar" / "best").model.state_dict()
    key = "wavlm.encoder.layers.0.attention.q_proj.weight"
    assert (diar[key] - ctc[key]).abs().max() < 0.05 * ctc[key].abs().max()
    assert "wavlm.encoder.layers.4.attention.q_proj.weight" not in diar  # 4 of the 5 layers kept


def test_resume_continues_from_state(runs, tiny_corpus, train_mod):
    folder, _ = tiny_corpus
    args = ["ctc", "--out", str(runs / "ctc"), "--corpus", str(folder)] + COMMON
    args[args.index("--steps") + 1] = "3"
    train_mod.main(args)
    log = _log(runs / "ctc")
    assert any(r.get("resumed") and r["step"] == 2 for r in log)
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert log[-1]["done"] == 3


def test_export_fp16_loads_and_matches(runs, train_mod, tmp_path):
    train_mod.export(runs / "ctc" / "best", tmp_path / "ship", fp16=True)
    a = load_pretrained(runs / "ctc" / "best").model
    b = load_pretrained(tmp_path / "ship").model
    assert (tmp_path / "ship" / "model.safetensors").stat().st_size < 0.55 * (
        runs / "ctc" / "best" / "model.safetensors").stat().st_size
    x = torch.randn(1, 16000)
    la, lb = a(x).logits, b(x).logits
    assert torch.allclose(la, lb, atol=0.05 * la.abs().max().item())


def test_init_from_same_architecture_copies_the_head_and_grows_identity_layers(runs, train_mod):
    src = load_pretrained(runs / "ctc" / "best").model.eval()
    n = src.config.num_hidden_layers
    grown = WavLMForCTC(train_mod.make_config("ctc", n + 2)).eval()
    logged = []
    train_mod.init_from(grown, runs / "ctc" / "best", logged.append)
    assert logged[-1]["head_copied"] and logged[-1]["identity_layers"] == [n, n + 1]
    assert torch.equal(grown.lm_head.weight, src.lm_head.weight)
    x = torch.randn(2, 24000)
    with torch.no_grad():  # the extra pre-LN layers start as identity blocks: same logits as the source
        torch.testing.assert_close(grown(x).logits, src(x).logits, rtol=0, atol=1e-5)
    # a fresh model of the grown depth computes something else: the test above is not vacuous
    fresh = WavLMForCTC(train_mod.make_config("ctc", n + 2)).eval()
    with torch.no_grad():
        assert (fresh(x).logits - src(x).logits).abs().max() > 1e-2


def test_lm_writes_a_language_model_of_the_training_transcripts(tiny_corpus, train_mod, tmp_path):
    from wavlm_live.model.lm import load_language_model

    folder, _ = tiny_corpus
    train_mod.main(["lm", "--corpus", str(folder), "--out", str(tmp_path / "lm"), "--alpha", "0.7",
                    "--no-score-boundary"])
    lm, settings = load_language_model(tmp_path / "lm")
    # the Hub / pyctcdecode layout: exactly attrs.json (pyctcdecode's four keys), unigrams.txt, one model file
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == ["attrs.json", "lm.arpa", "unigrams.txt"]
    assert set(json.loads((tmp_path / "lm" / "attrs.json").read_text())) == {"alpha", "beta", "unk_score_offset",
                                                                           "score_boundary"}
    train_words = {w.casefold() for line in (folder / "train" / "utts.jsonl").read_text().splitlines()
                   for w in json.loads(line)["norm"].split()}
    held_out = {w.casefold() for line in (folder / "val" / "utts.jsonl").read_text().splitlines()
                for w in json.loads(line)["norm"].split()}
    assert lm.order == 2 and set(lm.words) == train_words
    unigrams = (tmp_path / "lm" / "unigrams.txt").read_text().split()
    assert unigrams == sorted(unigrams) and {w.casefold() for w in unigrams} == train_words
    assert held_out - train_words  # the held-out sentences have words the LM never saw
    assert (settings.alpha, settings.beta, settings.score_boundary) == (0.7, 3.0, False)


def test_lid_run_writes_a_loadable_language_classifier(tiny_lid_corpus, train_mod, tmp_path):
    from wavlm_live.engine.tasks import SequenceRunner
    from wavlm_live.model import WavLMForSequenceClassification

    folder, meta = tiny_lid_corpus
    train_mod.main(["lid", "--corpus", str(folder), "--out", str(tmp_path / "lid")] + COMMON)
    log = _log(tmp_path / "lid")
    init = [r for r in log if "tensors_copied" in r]
    assert init and init[0]["init"] == str(train_mod.DEMO_CAPTIONS) and init[0]["tensors_copied"] > 0
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    ev = [r for r in log if "eval" in r][-1]
    assert 0 <= ev["error_seen"] <= 1 and 0 <= ev["error_unseen"] <= 1 and isinstance(ev["confused"], dict)
    pre = load_pretrained(tmp_path / "lid" / "best", expected_task="sequence")
    assert isinstance(pre.model, WavLMForSequenceClassification)
    assert pre.config.id2label == ("en", "de", "fr") and pre.config.num_hidden_layers == train_mod.LAYERS["lid"]
    assert pre.model(torch.randn(2, 16000)).logits.shape == (2, 3)
    # the encoder starts from the bundled captions model (two small steps away from it)
    ctc = load_pretrained(train_mod.DEMO_CAPTIONS).model.state_dict()
    key = "wavlm.encoder.layers.0.attention.q_proj.weight"
    lid = pre.model.state_dict()[key]
    assert (lid - ctc[key].float()).abs().max() < 0.05 * ctc[key].float().abs().max()
    # exported in float16 it still runs in the streaming engine's runner
    train_mod.export(tmp_path / "lid" / "best", tmp_path / "ship", fp16=True)
    runner = SequenceRunner(load_pretrained(tmp_path / "ship", expected_task="sequence"))
    p = runner.probabilities(np.random.default_rng(0).standard_normal(24000).astype(np.float32))
    assert p.shape == (3,) and abs(float(p.sum()) - 1) < 1e-3 and list(runner.labels) == ["en", "de", "fr"]
