"""Word n-gram LMs through KenLM (ARPA, Hub language_model/ folders), Kneser-Ney building,
and the CTC prefix beam search."""

import json

import numpy as np
import pytest

from wavlm_live.model import CTCDecoder, CTCVocabulary
from wavlm_live.model.lm import BeamSettings, CTCBeamDecoder, KenLM, build_arpa, load_language_model

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
    lm = KenLM(path)
    assert lm.order == 2 and lm.words == ("cat", "the") and lm.vocabulary_size == 2
    assert lm.log10(("<s>",), "THE") == pytest.approx(-0.1)  # listed bigram; the word matched to the LM's case
    assert lm.log10(("the",), "cat") == lm.log10(("THE",), "Cat") == pytest.approx(-0.3)  # history too
    assert lm.log10(("<s>",), "cat") == pytest.approx(-0.5 + -0.9)  # backoff(<s>) + p(cat)
    assert lm.log10(("cat",), "the") == pytest.approx(-0.6)  # context without backoff weight
    assert lm.log10(("the",), "dog") == pytest.approx(-0.2 + -2.0)  # unknown word -> backoff(the) + p(<unk>)
    assert lm.log10(("cat",), "</s>") == pytest.approx(-1.0)
    assert lm.is_prefix("CA") and not lm.is_prefix("CX") and lm.knows("CAT") and not lm.knows("CA")
    assert not lm.knows("<unk>") and not lm.knows("dog")
    assert lm.describe() == "2-gram LM of 2 words (lm.arpa)"


def test_kneser_ney_distributions_sum_to_one(tmp_path):
    sentences = ["the cat sat on the mat", "the dog sat", "a cat ran on the road", "the cat ran"]
    sizes = build_arpa(sentences, tmp_path / "lm.arpa.gz", order=3)
    assert sizes[1] == len({w for s in sentences for w in s.split()}) + 3  # + <s> </s> <unk>
    lm = KenLM(tmp_path / "lm.arpa.gz")  # kenlm reads gzip, and checks the file's structure
    events = list(lm.words) + ["</s>", "<unk>"]
    assert len(lm.words) == sizes[1] - 3
    for history in [(), ("<s>",), ("the",), ("<s>", "the"), ("the", "cat"), ("sat", "on"), ("zebra",)]:
        total = sum(10 ** lm.log10(history, w) for w in events)
        assert total == pytest.approx(1.0, abs=1e-5), history
    # seen continuations beat unseen ones
    assert lm.log10(("the",), "cat") > lm.log10(("the",), "sat")


def test_bad_files_and_bad_settings_are_reported(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\n\\end\\\n")
    with pytest.raises(ValueError, match=r"cannot read language model .*bad\.arpa: ") as info:
        KenLM(bad)
    assert "\n" not in str(info.value) and ".cc:" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_language_model(tmp_path / "missing")
    folder = tmp_path / "language_model"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="no KenLM model"):
        load_language_model(folder)
    (folder / "5gram.bin").write_bytes(b"mmap lm http://kheafield.com/code format version 5\0\0\0 truncated")
    with pytest.raises(ValueError, match=r"cannot read language model .*5gram\.bin"):
        load_language_model(folder)
    (folder / "5gram.bin").unlink()
    (folder / "lm.arpa").write_text(ARPA)
    (folder / "attrs.json").write_text(json.dumps({"alpha": "high"}))
    with pytest.raises(ValueError, match="alpha must be a number"):
        load_language_model(folder)
    (folder / "attrs.json").write_text(json.dumps({"alpha": 0.9, "beta": 2.0, "unk_score_offset": -8.0,
                                                   "score_boundary": "yes"}))
    with pytest.raises(ValueError, match="score_boundary must be true or false"):
        load_language_model(folder)
    (folder / "attrs.json").write_text(json.dumps({"alpha": 0.9, "beta": 2.0, "unk_score_offset": -8.0,
                                                   "score_boundary": False}))
    lm, settings = load_language_model(folder)
    assert (settings.alpha, settings.beta, settings.unk_score_offset, settings.score_boundary) == (0.9, 2.0, -8.0, False)
    assert lm.order == 2 and lm.words == ("cat", "the")  # no unigrams.txt: the ARPA's 1-grams
    (folder / "unigrams.txt").write_text("the\n")
    assert load_language_model(folder)[0].words == ("the",)  # unigrams.txt, as pyctcdecode reads it
    (folder / "other.arpa").write_text(ARPA)
    with pytest.raises(ValueError, match="several files besides attrs.json and unigrams.txt"):
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
    lm = KenLM(tmp_path / "lm.arpa")
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
    lm = KenLM(tmp_path / "lm.arpa")
    # weak delimiters: acoustically "THECAT" and "THE CAT" are nearly as likely
    frames = _spell(["THE", "CAT"])
    frames[9] = {"|": 0.45, "[PAD]": 0.5}
    x = _logits(frames)
    assert CTCDecoder(VOCAB).decode(x).text == "THECAT"
    assert CTCBeamDecoder(VOCAB, lm, BeamSettings(alpha=0.8, beta=1.0)).decode(x).text == "THE CAT"


def test_context_words_are_the_history_of_the_first_word(tmp_path):
    """A segment that continues an utterance is read with the previous words as LM history."""
    build_arpa(["the cat sat", "the cat ran", "a bat flew", "bat flew"], tmp_path / "lm.arpa", order=2)
    decoder = CTCBeamDecoder(VOCAB, KenLM(tmp_path / "lm.arpa"), BeamSettings(alpha=1.0, beta=0.0))
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
    fused = CTCBeamDecoder(vocab, KenLM(tmp_path / "lm.arpa"), BeamSettings(alpha=0.8, beta=1.0)).decode(x)
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
    beam = CTCBeamDecoder(vocab, KenLM(tmp_path / "lm.arpa"), BeamSettings(alpha=1.0, beta=0.5))
    out = beam.decode(x)
    assert out.text == "今天天气很好"
    assert [(w.word, w.start_frame, w.end_frame) for w in out.words] == [
        (ch, 3 * i, 3 * i + 2) for i, ch in enumerate("今天天气很好")]
    assert CTCBeamDecoder(vocab, None).decode(x).text == "今天天器很好"


def test_do_lower_case_vocabulary_gives_lower_case_words(tmp_path):
    vocab = CTCVocabulary(TOKENS, pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None,
                          do_lower_case=True)
    build_arpa(["the cat sat"], tmp_path / "lm.arpa", order=2)
    out = CTCBeamDecoder(vocab, KenLM(tmp_path / "lm.arpa")).decode(_logits(_spell(["THE", "CAT"])))
    assert out.text == "the cat" and [w.word for w in out.words] == ["the", "cat"]
    assert [w.word for w in out.words] == [w.word for w in CTCDecoder(vocab).decode(_logits(_spell(["THE", "CAT"]))).words]


def test_a_closed_word_that_is_only_a_prefix_of_known_words_gets_the_unknown_word_offset(tmp_path):
    """The defect behind outputs like NUCLEA, POSTMA, VACCIN: a partial word that begins a known
    word is never "unknown" while it grows, so if it closes there, it must get
    unk_score_offset then (once), as pyctcdecode's score() does for any word outside its
    unigrams. Here a weak final R makes NUCLEA the acoustically better word."""
    build_arpa(["the nuclear plant", "a nuclear test", "the postman came", "the plant"], tmp_path / "lm.arpa",
               order=2)
    lm = KenLM(tmp_path / "lm.arpa")
    assert lm.is_prefix("NUCLEA") and not lm.knows("NUCLEA")
    frames = _spell(["THE", "NUCLEAR", "PLANT"])
    frames[28] = frames[29] = {"R": 0.02, "[PAD]": 0.93}  # the R of NUCLEAR, barely heard
    x = _logits(frames)
    assert CTCDecoder(VOCAB).decode(x).text == "THE NUCLEA PLANT"
    fixed = CTCBeamDecoder(VOCAB, lm, BeamSettings(alpha=0.8, beta=1.0)).decode(x)
    assert fixed.text == "THE NUCLEAR PLANT"
    # without the offset (what the search did for such words before) NUCLEA survives
    assert CTCBeamDecoder(VOCAB, lm, BeamSettings(alpha=0.8, beta=1.0, unk_score_offset=0.0)).decode(x).text \
        == "THE NUCLEA PLANT"
    # the offset comes once: a word that left the prefixes early pays it as a partial, not again
    beam = CTCBeamDecoder(VOCAB, lm, BeamSettings(alpha=0.8, beta=1.0))
    state = lm.start()
    log10 = lm.score(state, "NUCLEA")[0]
    assert beam._close(state, "NUCLEA", False)[0] == pytest.approx(0.8 * log10 * np.log(10) + 1.0 - 10.0)
    assert beam._close(state, "NUCLEA", True)[0] == pytest.approx(0.8 * log10 * np.log(10) + 1.0)
    assert beam._close(state, "NUCLEAR", False)[0] == pytest.approx(0.8 * lm.log10(("<s>",), "nuclear") * np.log(10) + 1.0)


def test_score_boundary_scores_the_end_of_the_utterance(tmp_path):
    """With score_boundary (pyctcdecode's default) the last word is followed by </s>: CAT ends
    sentences, CAP never does, so at the end of an utterance CAT wins an acoustic near-tie;
    a piece that the next one continues (ends_utterance=False) or score_boundary off keeps CAP."""
    build_arpa(["the cat", "the cat", "the cap is red", "the cap was blue"], tmp_path / "lm.arpa", order=2)
    lm = KenLM(tmp_path / "lm.arpa")
    x = _logits(_spell(["THE", "CAT"], {16: {"P": 0.55, "T": 0.4}, 17: {"P": 0.55, "T": 0.4}}))
    assert CTCDecoder(VOCAB).decode(x).text == "THE CAP"
    settings = BeamSettings(alpha=0.8, beta=1.0)
    assert CTCBeamDecoder(VOCAB, lm, settings).decode(x).text == "THE CAT"
    assert CTCBeamDecoder(VOCAB, lm, settings).decode(x, ends_utterance=False).text == "THE CAP"
    no_boundary = BeamSettings(alpha=0.8, beta=1.0, score_boundary=False)
    assert CTCBeamDecoder(VOCAB, lm, no_boundary).decode(x).text == "THE CAP"


DATA_LM = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "lm"


def _hub_folder(folder, model_file, settings):
    """A Hub-style language_model/ folder (as Wav2Vec2ProcessorWithLM saves it) around one model file."""
    from wavlm_live.model.lm import read_arpa_unigrams, write_language_model

    return write_language_model(folder, model_file, settings, unigrams=read_arpa_unigrams(DATA_LM / "tiny.arpa"))


@pytest.mark.parametrize("binary", ["tiny.bin", "tiny-trie.bin"])
def test_kenlm_binary_from_a_hub_folder_decodes_as_the_same_lm_in_arpa_form(tmp_path, binary):
    """tests/data/lm/tiny.bin(-trie) were made from tiny.arpa with KenLM's build_binary (see
    tests/data/README.md): loaded from Hub-layout folders, both give the same scores and the
    same beam-search output on many noisy spellings of sentences and non-sentences."""
    settings = BeamSettings(alpha=0.8, beta=1.0, unk_score_offset=-10.0, score_boundary=True, token_min_logp=-5.0)
    lm_bin, s_bin = load_language_model(_hub_folder(tmp_path / "bin", DATA_LM / binary, settings))
    lm_arpa, s_arpa = load_language_model(_hub_folder(tmp_path / "arpa", DATA_LM / "tiny.arpa", settings))
    assert s_bin == s_arpa and s_bin.attrs() == settings.attrs()  # attrs.json holds pyctcdecode's four keys
    assert lm_bin.path.suffix == ".bin" and lm_arpa.path.suffix == ".arpa" and lm_bin.order == lm_arpa.order == 3
    assert lm_bin.words == lm_arpa.words and len(lm_bin.words) == 34
    words = list(lm_arpa.words) + ["zebra", "</s>"]
    for history in [(), ("<s>",), ("<s>", "the"), ("the", "cat"), ("nuclear",), ("zebra", "the")]:
        for w in words:
            assert lm_bin.log10(history, w) == pytest.approx(lm_arpa.log10(history, w), abs=1e-6), (history, w)
    rng = np.random.default_rng(0)
    sentences = (DATA_LM / "sentences.txt").read_text().splitlines() + ["the cat brought power", "a man came"]
    right = greedy_right = 0
    for sentence in sentences * 2:
        frames = _spell(sentence.upper().split())
        for t in rng.choice(len(frames), size=len(frames) // 8, replace=False):  # confusions
            truth = max(frames[t], key=frames[t].get)
            other = rng.choice([c for c in TOKENS[3:] if c != truth])
            frames[t] = {other: 0.5, truth: 0.4}
        x = _logits(frames)
        got = [CTCBeamDecoder(VOCAB, lm, settings).decode(x) for lm in (lm_bin, lm_arpa)]
        assert got[0] == got[1]
        right += got[0].text == sentence.upper()
        greedy_right += CTCDecoder(VOCAB).decode(x).text == sentence.upper()
    assert right > greedy_right  # the LM is really used
