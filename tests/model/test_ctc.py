"""CTC vocabulary reading and greedy decoding against transformers' Wav2Vec2CTCTokenizer."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
import torch

from wavlm_live.model import CTCDecoder, CTCVocabulary, Transcript, load_pretrained

from .conftest import VOCAB, write_tokenizer


def hf_tokenizer(folder):
    from transformers import Wav2Vec2CTCTokenizer

    return Wav2Vec2CTCTokenizer.from_pretrained(str(folder))


def _cjk(token: str) -> bool:
    return bool(token) and all(unicodedata.name(c, "").startswith(("CJK UNIFIED", "HIRAGANA", "KATAKANA"))
                               for c in token)


def expected_words(tok, ref) -> list[tuple[str, int, int]]:
    """The words captions need, from transformers' own offsets: its ``word_offsets``, except
    that with ``do_lower_case`` they take the text's (lower) case and that each Chinese /
    Japanese character is a word of its own (the runs of other characters between them stay
    words), its span that character's ``char_offsets`` span."""
    words = []
    for w in ref.word_offsets:
        start, end = int(w["start_offset"]), int(w["end_offset"])
        chars = [c for c in ref.char_offsets if start <= int(c["start_offset"]) and int(c["end_offset"]) <= end
                 and c["char"] != " "]
        run: list = []
        for c in chars + [None]:
            if c is not None and not _cjk(c["char"]):
                run.append(c)
                continue
            for piece in (run, [c] if c else []):
                if piece:
                    words.append(("".join(p["char"] for p in piece), int(piece[0]["start_offset"]),
                                  int(piece[-1]["end_offset"])))
            run = []
    if tok.do_lower_case:
        words = [(w.lower(), s, e) for w, s, e in words]
    return words


def assert_same_decode(tok, decoder: CTCDecoder, ids) -> Transcript:
    """Our decode of ``ids`` equals the tokenizer's text, char offsets and word offsets (see
    :func:`expected_words` for the two documented differences of the words)."""
    ref = tok.decode(ids, output_char_offsets=True, output_word_offsets=True)
    got = decoder.decode(torch.as_tensor(ids))
    assert got.text == ref.text
    assert [(c.char, c.start_frame, c.end_frame) for c in got.chars] == \
        [(c["char"], int(c["start_offset"]), int(c["end_offset"])) for c in ref.char_offsets]
    assert [(w.word, w.start_frame, w.end_frame) for w in got.words] == expected_words(tok, ref)
    if not tok.do_lower_case and not any(_cjk(c["char"]) for c in ref.char_offsets):
        assert [(w.word, w.start_frame, w.end_frame) for w in got.words] == \
            [(w["word"], int(w["start_offset"]), int(w["end_offset"])) for w in ref.word_offsets]
    for w in got.words:
        assert w.start == pytest.approx(w.start_frame * decoder.frame_seconds)
        assert w.end == pytest.approx(w.end_frame * decoder.frame_seconds)
    return got


def random_ids(rng, n_frames, n_tokens, blank=0, delim=2):
    """Frame ids shaped like CTC output: runs of blanks, repeated characters, delimiters."""
    ids = []
    while len(ids) < n_frames:
        r = rng.random()
        tok = blank if r < 0.4 else delim if r < 0.55 else int(rng.integers(0, n_tokens))
        ids += [tok] * int(rng.integers(1, 4))
    return ids[:n_frames]


@pytest.mark.parametrize("lower", [False, True])
def test_decode_matches_tokenizer_on_random_ids(tmp_path, lower):
    write_tokenizer(tmp_path, do_lower_case=lower)
    tok, vocab = hf_tokenizer(tmp_path), CTCVocabulary.from_files(tmp_path)
    assert vocab.tokens == tuple(tok.convert_ids_to_tokens(list(range(len(vocab)))))
    assert vocab.tokens[:len(VOCAB)] == tuple(VOCAB) and vocab.tokens[len(VOCAB):] == ("<s>", "</s>")
    assert vocab.blank_id == tok.pad_token_id == 0 and vocab.do_lower_case is lower
    decoder = CTCDecoder(vocab)
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 60, 400):
        for _ in range(10):
            # ids up to 15 include some outside the 12-token vocabulary (decoded as unk)
            assert_same_decode(tok, decoder, random_ids(rng, n, 16))
    # leading / trailing / doubled delimiters and blanks between repeats
    for ids in ([2, 2, 3, 0, 3, 2, 0, 2, 4, 4, 2], [0, 0, 0], [3, 3, 3], [2, 3, 2, 2, 0, 2, 4]):
        assert_same_decode(tok, decoder, ids)


def test_decode_accepts_logits_arrays_and_lists(tmp_path):
    write_tokenizer(tmp_path)
    decoder = CTCDecoder(CTCVocabulary.from_files(tmp_path))
    ids = [0, 3, 3, 0, 4, 2, 5, 5, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(ids), len(VOCAB)).float() * 5 - 1
    expected = decoder.decode(torch.tensor(ids))
    assert expected.text == "AB C"
    assert decoder.decode(logits) == expected
    assert decoder.decode(logits.numpy()) == expected
    assert decoder.decode(np.array(ids)) == expected
    assert decoder.decode(ids) == expected
    assert [(w.word, w.start, w.end) for w in expected.words] == \
        [("AB", pytest.approx(0.02), pytest.approx(0.10)), ("C", pytest.approx(0.12), pytest.approx(0.16))]
    with pytest.raises(ValueError, match="shape"):
        decoder.decode(logits[None])
    with pytest.raises(ValueError, match="shape"):
        decoder.decode(torch.zeros(5))  # float ids
    with pytest.raises(TypeError, match="str"):
        decoder.decode("abc")
    with pytest.raises(ValueError, match="frame_seconds"):
        CTCDecoder(decoder.vocab, frame_seconds=0)


def test_decode_real_ctc_logits_from_tiny_model(hf_checkpoint):
    """Same logits through the tokenizer and through our decoder (as the issue asks)."""
    hf, folder = hf_checkpoint("WavLMForCTC")
    pre = load_pretrained(folder)
    tok = hf_tokenizer(folder)
    torch.manual_seed(3)
    with torch.no_grad():
        logits = pre.model(torch.randn(1, 48000)).logits[0]
    got = assert_same_decode(tok, pre.decoder, logits.argmax(-1).tolist())
    assert got == pre.decoder.decode(logits)
    assert pre.decoder.frame_seconds == pytest.approx(0.02)


def test_special_tokens_missing_from_vocab_are_appended(tmp_path):
    """vocab.json without <s>, </s>, unk or "|": transformers appends them (bos, eos, unk, pad,
    word delimiter order); ids beyond decode as unk."""
    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "A": 1, "B": 2}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer"}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": {"content": "[UNK]", "single_word": False}, "pad_token": "<pad>", "bos_token": "<s>",
         "eos_token": "</s>"}))
    tok, vocab = hf_tokenizer(tmp_path), CTCVocabulary.from_files(tmp_path)
    assert vocab.tokens == tuple(tok.convert_ids_to_tokens(list(range(len(vocab)))))
    assert vocab.tokens[3:] == ("<s>", "</s>", "[UNK]", "|")
    decoder = CTCDecoder(vocab)
    for ids in ([1, 2, 3, 4, 5, 6, 7, 9], [3, 1, 6, 6, 0, 2, 4], [6, 1, 6]):
        assert_same_decode(tok, decoder, ids)


def test_added_tokens_json_and_config_precedence(tmp_path):
    """Legacy files: added_tokens.json ids, tokenizer_config.json special tokens (as AddedToken
    dicts) overridden by special_tokens_map.json, clean-up of tokenization spaces."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "|": 2, "A": 3, "B": 4, ".": 5, "'": 6}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<s>": 7, "</s>": 8}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"unk_token": {"__type": "AddedToken", "content": "<unk>"}, "pad_token": "[PAD]", "bos_token": "<s>",
         "eos_token": "</s>", "word_delimiter_token": "|", "do_lower_case": False,
         "clean_up_tokenization_spaces": True, "tokenizer_class": "Wav2Vec2CTCTokenizer"}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"unk_token": "[UNK]", "pad_token": "[PAD]"}))
    tok, ours = hf_tokenizer(tmp_path), CTCVocabulary.from_files(tmp_path)
    assert ours.unk_token == tok.unk_token == "[UNK]"
    assert ours.tokens == tuple(tok.convert_ids_to_tokens(list(range(len(ours)))))
    decoder = CTCDecoder(ours)
    for ids in ([3, 2, 5, 2, 4, 6, 3, 7, 8], [3, 2, 6, 2, 4], [7, 3, 3, 0, 3, 2, 2, 5, 12]):
        assert_same_decode(tok, decoder, ids)
    assert decoder.decode([3, 2, 5]).text == "A."


def test_to_files_round_trip_through_transformers(tmp_path):
    write_tokenizer(tmp_path / "src", do_lower_case=True)
    vocab = CTCVocabulary.from_files(tmp_path / "src")
    vocab.to_files(tmp_path / "out")
    again = CTCVocabulary.from_files(tmp_path / "out")
    assert again == vocab
    tok = hf_tokenizer(tmp_path / "out")
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert_same_decode(tok, CTCDecoder(again), random_ids(rng, 80, 12))


def test_bad_vocabularies(tmp_path):
    with pytest.raises(FileNotFoundError):
        CTCVocabulary.from_files(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"eng": {"<pad>": 0}}))
    with pytest.raises(ValueError, match="nested"):
        CTCVocabulary.from_files(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CTCVocabulary.from_files(tmp_path)
    with pytest.raises(ValueError, match="pad"):
        CTCVocabulary(tokens=("a", "b"), pad_token="<pad>")


def write_files(folder, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")


def letters_vocab(letters: str, delimiter: bool = True) -> dict:
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    if delimiter:
        vocab["|"] = 4
    for ch in letters:
        vocab[ch] = len(vocab)
    return vocab


@pytest.mark.parametrize("name", ["xls-r-ru", "zh", "zh-with-delimiter", "ja", "arabic", "devanagari",
                                  "upper-do-lower-case"])
def test_vocabularies_of_any_language_decode_as_transformers(tmp_path, name):
    """Lower-case Cyrillic (the XLS-R recipe's files), Chinese characters without a word
    delimiter and with one, Japanese kana and kanji, Arabic, Devanagari (vowel signs as
    tokens), and an upper-case vocabulary with do_lower_case: the same text and char offsets
    as Wav2Vec2CTCTokenizer.decode on the same ids, words as :func:`expected_words`."""
    from .hub_layouts import XLS_R_RU_TOKENIZER, ZH_CHARS, ZH_TOKENIZER

    files = {
        "xls-r-ru": XLS_R_RU_TOKENIZER,
        "zh": ZH_TOKENIZER,
        "zh-with-delimiter": {**ZH_TOKENIZER,
                              "vocab.json": {**ZH_TOKENIZER["vocab.json"], "|": len(ZH_TOKENIZER["vocab.json"])}},
        "ja": {"vocab.json": letters_vocab("こんにちはカタコーヒー日本語私", delimiter=False)},
        "arabic": {"vocab.json": letters_vocab("ابتثجحخدذرزسشصضطظعغفقكلمنهوي")},
        "devanagari": {"vocab.json": letters_vocab("कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह" "ािीुूेैोौं्")},
        "upper-do-lower-case": {"vocab.json": letters_vocab("ABCDEFGH'"),
                                "tokenizer_config.json": {"do_lower_case": True}},
    }[name]
    write_files(tmp_path, files)
    tok, vocab = hf_tokenizer(tmp_path), CTCVocabulary.from_files(tmp_path)
    assert vocab.tokens == tuple(tok.convert_ids_to_tokens(list(range(len(vocab)))))
    decoder = CTCDecoder(vocab)
    n_model = len(json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")))  # the CTC head's width
    if "|" in vocab.tokens:
        delim = vocab.tokens.index("|")
    else:
        delim = vocab.blank_id
    rng = np.random.default_rng(7)
    texts = []
    for n in (0, 1, 7, 80, 300):
        for _ in range(8):
            ids = [i if i < n_model else delim for i in random_ids(rng, n, n_model, vocab.blank_id, delim)]
            texts.append(assert_same_decode(tok, decoder, ids).text)
    assert any(texts)
    if name == "zh":
        got = decoder.decode([vocab.tokens.index(c) for c in "你你好"] + [0] + [vocab.tokens.index("好")])
        assert got.text == "你好好"
        assert [(w.word, w.start_frame, w.end_frame) for w in got.words] == [("你", 0, 2), ("好", 2, 3),
                                                                              ("好", 4, 5)]
        assert decoder.char_word_ids == frozenset(vocab.tokens.index(c) for c in ZH_CHARS)
    if name == "upper-do-lower-case":
        got = decoder.decode([5, 6, 4, 7])
        assert got.text == "ab c" and [w.word for w in got.words] == ["ab", "c"]
        assert [c.char for c in got.chars] == ["A", "B", " ", "C"]  # transformers' offsets keep the case
