"""`wavlm-live eval` on labelled clips (NAME.label): the clip's class and the accuracy."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from wavlm_live.cli import CliError, main
from wavlm_live.cli.evaluate import classification_report, clip_prediction, read_label
from wavlm_live.events import ClassificationEvent, Label


def event(start, end, *labels, scope="window"):
    return ClassificationEvent(start=start, end=end, speaker=None, scope=scope,
                               labels=tuple(Label(name, score) for name, score in labels))


def test_the_clip_class_is_the_duration_weighted_majority_of_top_labels():
    # growing then sliding windows: en tops 3 of 1 + 2 + 4 = 7 s, fr 2 of 3 + 4 = 7 s: a tie in
    # seconds, broken by the summed top probability (en 0.6 + 0.5 + 0.9 = 2.0 > fr 0.7 + 0.8 = 1.5)
    events = [event(0, 1, ("en", 0.6), ("fr", 0.4)), event(0, 2, ("en", 0.5)), event(0, 3, ("fr", 0.7)),
              event(0, 4, ("fr", 0.8)), event(1, 5, ("en", 0.9))]
    assert clip_prediction(events) == "en"
    # more seconds beat more events: one 6 s turn of de against two 1 s turns of nl
    assert clip_prediction([event(0, 1, ("nl", 0.99)), event(1, 7, ("de", 0.4)), event(7, 8, ("nl", 0.99))]) == "de"
    # only the top label votes, whatever the runners-up hold
    assert clip_prediction([event(0, 4, ("it", 0.34), ("es", 0.33), ("pt", 0.33)),
                            event(0, 3, ("es", 0.5), ("it", 0.5))]) == "it"
    # a tie in seconds and score goes to the class voted for first
    assert clip_prediction([event(0, 2, ("sv", 0.5)), event(2, 4, ("pl", 0.5))]) == "sv"
    # no usable vote: no class
    assert clip_prediction([]) is None
    assert clip_prediction([event(1, 1, ("en", 1.0)), event(0, 2)]) is None


def test_classification_report_counts_clips_not_events():
    labels = {"a": "en", "b": "en", "c": "fr", "d": "de", "e": "fr"}
    predictions = {"a": "en", "b": "fr", "c": "fr", "d": None, "e": "fr"}
    report = classification_report(labels, predictions)
    assert report == {
        "clips_classification": 5, "accuracy": 0.6, "clips_unclassified": 1,
        "accuracy_by_label": {"de": 0.0, "en": 0.5, "fr": 1.0},
        "confusions": {"de>none": 1, "en>fr": 1},
    }


def test_label_files_hold_one_class(tmp_path):
    (tmp_path / "a.label").write_text("\n  fr \n\n")
    assert read_label(tmp_path / "a.label") == "fr"
    for text in ("", "fr\nen\n"):
        (tmp_path / "b.label").write_text(text)
        with pytest.raises(CliError, match="exactly one line"):
            read_label(tmp_path / "b.label")


@pytest.fixture(scope="module")
def always_fr(tmp_path_factory):
    """A tiny WavLMForSequenceClassification checkpoint (written by transformers) whose
    classifier ignores its input and always says "fr" (weights 0, bias favouring class 1)."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMForSequenceClassification

    from tests.conftest import tiny_config

    folder = tmp_path_factory.mktemp("always-fr")
    langs = {0: "en", 1: "fr", 2: "de"}
    model = WavLMForSequenceClassification(tiny_config(num_labels=3, id2label=langs,
                                                       label2id={v: k for k, v in langs.items()})).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 3.0, -1.0]))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def labelled_folder(root, labels, seconds=(2.5, 1.5, 1.2)):
    root.mkdir()
    rng = np.random.default_rng(0)
    for (name, label), dur in zip(labels.items(), seconds):
        sf.write(root / f"{name}.flac", (0.1 * rng.standard_normal(int(dur * 16000))).astype(np.float32), 16000)
        (root / f"{name}.label").write_text(label + "\n")
    return root


def test_eval_scores_labelled_clips_through_the_engine(always_fr, tmp_path, capsys):
    # the clips are white noise: --no-vad, or the speech gate would (rightly) skip every window
    folder = labelled_folder(tmp_path / "clips", {"one": "fr", "two": "fr", "three": "en"})
    (folder / "notes.txt.bak").write_text("not a clip")
    only = ["--no-captions", "--no-diarization", "--no-embeddings", "--no-vad", "--classification-model", str(always_fr)]
    assert main(["eval", str(folder), "--json", *only]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["clips_classification"] == 3 and report["clips_unclassified"] == 0
    assert report["accuracy"] == round(2 / 3, 4)
    assert report["accuracy_by_label"] == {"en": 0.0, "fr": 1.0} and report["confusions"] == {"en>fr": 1}
    assert report["classified"] == "window"  # no diarization: every window is classified
    assert "eval: 3 clip(s)" in captured.err
    # the table prints the accuracy as a percentage with the other metrics
    assert main(["eval", str(folder), *only]) == 0
    out = capsys.readouterr().out
    assert "accuracy: 66.67%" in out and "en 0.0%, fr 100.0%" in out and "en>fr x1" in out


def test_eval_label_errors_are_one_line(always_fr, tmp_path, capsys):
    only = ["--no-captions", "--no-diarization", "--no-embeddings", "--no-vad", "--classification-model", str(always_fr)]
    folder = labelled_folder(tmp_path / "unknown", {"one": "fr", "two": "klingon"})
    assert main(["eval", str(folder), *only]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "klingon" in err and "en, fr, de" in err
    folder = labelled_folder(tmp_path / "turns", {"one": "fr"})
    assert main(["eval", str(folder), "--classify", "turns", *only]) == 2  # turns need diarization
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diarization" in err and "Traceback" not in err
    # without a classification model the labels cannot be scored
    assert main(["eval", str(folder), "--no-captions", "--no-diarization", "--no-embeddings"]) == 2
    assert "disabled" in capsys.readouterr().err
