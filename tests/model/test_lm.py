"""Word n-gram LMs (ARPA reading, Kneser-Ney building) and the CTC prefix beam search."""

import json

import numpy as np
import pytest

from wavlm_live.model import CTCDecoder, CTCVocabulary
from wavlm_live.model.lm import BeamSettings, CTCBeamDecoder, NGramLM, build_arpa, load_language_model

TOKENS = ("[PAD]", "[UNK]", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'")
VOCAB = CTCVocabulary(TOKENS, pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None)

ARPA = """\\data\\
ngram 1=5
ngram 2=2

\\1-grams:
-99\t<s>\t-0.5
-1.0\t</s>
-0.6\tthe\t-0.2
-0.9\tcat
-2.0\t<unk>

\\2-grams:
-0.1\t<s> the
-0.3\tthe cat

\\end\\
"""


def test_arpa_scores_follow_backoff(tmp_path):
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA)
    lm = NGramLM.from_arpa(path)
    assert lm.order == 2 and lm.vocabulary == {"the", "cat"}
    assert lm.score(("<s>",), "THE") == pytest.approx(-0.1)  # listed bigram, case-folded
    assert lm.score(("the",), "cat") == lm.score(("THE",), "Cat") == pytest.approx(-0.3)  # history case-folded too
    assert lm.score(("<s>",), "cat") == pytest.approx(-0.5 + -0.9)  # backoff(<s>) + p(cat)
    assert lm.score(("cat",), "the") == pytest.approx(-0.6)  # context without backoff weight
    assert lm.score(("the",), "dog") == pytest.approx(-2.0)  # unknown word -> <unk>
    assert lm.is_prefix("CA") and not lm.is_prefix("CX")


def test_kneser_ney_distributions_sum_to_one(tmp_path):
    sentences = ["the cat sat on the mat", "the dog sat", "a cat ran on the road", "the cat ran"]
    sizes = build_arpa(sentences, tmp_path / "lm.arpa.gz", order=3)
    assert sizes[1] == len({w for s in sentences for w in s.split()}) + 3  # + <s> </s> <unk>
    lm = NGramLM.from_arpa(tmp_path / "lm.arpa.gz")
    events = sorted(lm.vocabulary) + ["</s>", "<unk>"]
    for history in [(), ("<s>",), ("the",), ("<s>", "the"), ("the", "cat"), ("sat", "on"), ("zebra",)]:
        total = sum(10 ** lm.score(history, w) for w in events)
        assert total == pytest.approx(1.0, abs=1e-5), history
    # seen continuations beat unseen ones
    assert lm.score(("the",), "cat") > lm.score(("the",), "sat")


def test_bad_arpa_and_bad_settings_are_reported(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\n\\end\\\n")
    with pytest.raises(ValueError, match="bad.arpa:5"):
        NGramLM.from_arpa(bad)
    with pytest.raises(FileNotFoundError):
        load_language_model(tmp_path / "missing")
    folder = tmp_path / "language_model"
    folder.mkdir()
    (folder / "5gram.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5")
    with pytest.raises(ValueError, match="KenLM binary"):
        load_language_model(folder)
    (folder / "lm.arpa").write_text(ARPA)
    (folder / "attrs.json").write_text(json.dumps({"alpha": "high"}))
    with pytest.raises(ValueError, match="alpha must be a number"):
        load_language_model(folder)
    (folder / "attrs.json").write_text(json.dumps({"alpha": 0.9, "beta": 2.0, "score_boundary": True}))
    lm, settings = load_language_model(folder)
    assert (settings.alpha, settings.beta) == (0.9, 2.0) and lm.order == 2
    (folder / "other.arpa").write_text(ARPA)
    with pytest.raises(ValueError, match="several ARPA files"):
        load_language_model(folder)
    with pytest.raises(ValueError, match="beam_width"):
        BeamSettings(beam_width=0)


def _logits(frames):
    """Log-probabilities from a list of {token: prob} dicts (the rest spread evenly)."""
    out = np.zeros((len(frames), len(TOKENS)), np.float32)
    for t, probs in enumerate(frames):
        rest = (1 - sum(probs.values())) / (len(TOKENS) - len(probs))
        row = np.full(len(TOKENS), rest)
        for tok, p in probs.items():
            row[TOKENS.index(tok)] = p
        out[t] = np.log(row)
    return out


def test_beam_search_finds_the_most_probable_labelling_not_the_best_path():
    # Best path: blank, blank (~0.36) -> "". Labelling "A": AA + A_ + _A (~0.16 + 0.24 + 0.24).
    x = _logits([{"[PAD]": 0.59, "A": 0.4}] * 2)
    assert CTCDecoder(VOCAB).decode(x).text == ""
    out = CTCBeamDecoder(VOCAB, None, BeamSettings(beam_width=4)).decode(x)
    assert out.text == "A"


def _spell(words, confusions=None):
    """Frames spelling ``words``: each letter 2 frames then a blank, '|' between words;
    ``confusions`` maps a frame index to a {token: prob} dict overriding it."""
    frames = []
    for i, w in enumerate(words):
        if i:
            frames.append({"|": 0.95})
        for ch in w:
            frames += [{ch: 0.95}, {ch: 0.95}, {"[PAD]": 0.95}]
    for t, probs in (confusions or {}).items():
        frames[t] = probs
    return frames


def test_language_model_corrects_a_near_miss_and_keeps_word_offsets(tmp_path):
    build_arpa(["the cat sat", "a cat ran", "the cat ran"], tmp_path / "lm.arpa", order=2)
    lm = NGramLM.from_arpa(tmp_path / "lm.arpa")
    # the acoustics slightly prefer K over C as the first letter of CAT
    confused = {10: {"K": 0.55, "C": 0.4}, 11: {"K": 0.55, "C": 0.4}}
    x = _logits(_spell(["THE", "CAT", "SAT"], confused))
    greedy = CTCDecoder(VOCAB).decode(x)
    assert greedy.text == "THE KAT SAT"
    plain = CTCBeamDecoder(VOCAB, None).decode(x)
    assert plain.text == "THE KAT SAT"
    fused = CTCBeamDecoder(VOCAB, lm, BeamSettings(alpha=0.8, beta=1.0)).decode(x)
    assert fused.text == "THE CAT SAT"
    assert [(w.start_frame, w.end_frame) for w in fused.words] == [(w.start_frame, w.end_frame) for w in greedy.words]
    assert fused.words[1].start == pytest.approx(10 * 0.02)


def test_running_words_together_does_not_escape_the_language_model(tmp_path):
    build_arpa(["the cat sat", "a dog ran"] * 3, tmp_path / "lm.arpa", order=2)
    lm = NGramLM.from_arpa(tmp_path / "lm.arpa")
    # weak delimiters: acoustically "THECAT" and "THE CAT" are nearly as likely
    frames = _spell(["THE", "CAT"])
    frames[9] = {"|": 0.45, "[PAD]": 0.5}
    x = _logits(frames)
    assert CTCDecoder(VOCAB).decode(x).text == "THECAT"
    assert CTCBeamDecoder(VOCAB, lm, BeamSettings(alpha=0.8, beta=1.0)).decode(x).text == "THE CAT"


def test_context_words_are_the_history_of_the_first_word(tmp_path):
    """A segment that continues an utterance is read with the previous words as LM history."""
    build_arpa(["the cat sat", "the cat ran", "a bat flew", "bat flew"], tmp_path / "lm.arpa", order=2)
    decoder = CTCBeamDecoder(VOCAB, NGramLM.from_arpa(tmp_path / "lm.arpa"), BeamSettings(alpha=1.0, beta=0.0))
    x = _logits(_spell(["CAT"], {0: {"B": 0.5, "C": 0.45}, 1: {"B": 0.5, "C": 0.45}}))
    assert CTCDecoder(VOCAB).decode(x).text == "BAT"
    assert decoder.decode(x).text == "BAT"  # after <s>, "bat" starts sentences and "cat" never does
    assert decoder.decode(x, context=["THE"]).text == "CAT"
    assert decoder.decode(x, context=["A", "BIG", "THE"]).text == "CAT"  # only the last order-1 words count


def test_beam_decoder_rejects_bad_input():
    decoder = CTCBeamDecoder(VOCAB, None)
    for bad in (np.zeros((5, len(TOKENS) + 1)), np.zeros(len(TOKENS)), np.zeros((5, 0))):
        with pytest.raises(ValueError, match="expected logits"):
            decoder.decode(bad)
    no_delim = CTCVocabulary(("[PAD]", "A"), pad_token="[PAD]", unk_token="<unk>", bos_token=None, eos_token=None,
                             word_delimiter_token="|")
    with pytest.raises(ValueError, match="word delimiter token or character words"):
        CTCBeamDecoder(no_delim, None)
    assert decoder.decode(np.zeros((0, len(TOKENS)))).text == ""


def _logits_for(tokens, frames):
    """Log-probabilities over ``tokens`` from a list of {token: prob} dicts."""
    out = np.zeros((len(frames), len(tokens)), np.float32)
    for t, probs in enumerate(frames):
        row = np.full(len(tokens), (1 - sum(probs.values())) / (len(tokens) - len(probs)))
        for tok, p in probs.items():
            row[tokens.index(tok)] = p
        out[t] = np.log(row)
    return out


def test_lower_case_cyrillic_vocabulary_with_a_language_model(tmp_path):
    """The XLS-R recipe's vocabulary ("|" first, lower-case letters, [UNK] / [PAD] last): the
    LM fixes a near-miss, words keep their frames, the text is lower-case Cyrillic."""
    letters = "абвгдежзийклмнопрстуфхцчшщъыьэюяё"
    tokens = ("|", *letters, "[UNK]", "[PAD]", "<s>", "</s>")
    vocab = CTCVocabulary(tokens, pad_token="[PAD]", unk_token="[UNK]")
    build_arpa(["кот спит", "кот ест", "мама спит"], tmp_path / "lm.arpa", order=2)
    frames = []
    for i, w in enumerate(["кот", "спит"]):
        if i:
            frames.append({"|": 0.95})
        for ch in w:
            frames += [{ch: 0.95}, {ch: 0.95}, {"[PAD]": 0.95}]
    frames[6] = frames[7] = {"д": 0.55, "т": 0.4}  # "код" sounds slightly better than "кот"
    x = _logits_for(tokens, frames)
    assert CTCDecoder(vocab).decode(x).text == "код спит"
    fused = CTCBeamDecoder(vocab, NGramLM.from_arpa(tmp_path / "lm.arpa"), BeamSettings(alpha=0.8, beta=1.0)).decode(x)
    assert fused.text == "кот спит"
    assert [(w.word, w.start_frame, w.end_frame) for w in fused.words] == [("кот", 0, 8), ("спит", 10, 21)]


def test_chinese_characters_without_delimiter_are_words_for_the_language_model(tmp_path):
    """A character vocabulary without "|": each character closes as a word and is scored by
    a character n-gram LM, which picks 天气 over the acoustically preferred 天器."""
    tokens = ("[PAD]", "[UNK]", *"今天气器很好", "|")  # "|" appended past the head, as transformers does
    vocab = CTCVocabulary(tokens, pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None)
    build_arpa(["今 天 天 气 很 好", "天 气 好", "今 天 很 好", "器"], tmp_path / "lm.arpa", order=2)
    frames = []
    for ch in "今天天气很好":
        frames += [{ch: 0.95}, {ch: 0.95}, {"[PAD]": 0.95}]
    frames[9] = frames[10] = {"器": 0.55, "气": 0.4}
    x = _logits_for(tokens[:-1], frames)  # the model's head has no "|"
    assert CTCDecoder(vocab).decode(x).text == "今天天器很好"
    beam = CTCBeamDecoder(vocab, NGramLM.from_arpa(tmp_path / "lm.arpa"), BeamSettings(alpha=1.0, beta=0.5))
    out = beam.decode(x)
    assert out.text == "今天天气很好"
    assert [(w.word, w.start_frame, w.end_frame) for w in out.words] == [
        (ch, 3 * i, 3 * i + 2) for i, ch in enumerate("今天天气很好")]
    assert CTCBeamDecoder(vocab, None).decode(x).text == "今天天器很好"


def test_do_lower_case_vocabulary_gives_lower_case_words(tmp_path):
    vocab = CTCVocabulary(TOKENS, pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None,
                          do_lower_case=True)
    build_arpa(["the cat sat"], tmp_path / "lm.arpa", order=2)
    out = CTCBeamDecoder(vocab, NGramLM.from_arpa(tmp_path / "lm.arpa")).decode(_logits(_spell(["THE", "CAT"])))
    assert out.text == "the cat" and [w.word for w in out.words] == ["the", "cat"]
    assert [w.word for w in out.words] == [w.word for w in CTCDecoder(vocab).decode(_logits(_spell(["THE", "CAT"]))).words]
