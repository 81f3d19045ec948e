"""CTC vocabulary and greedy decoding with character and word offsets.

Reproduces transformers 5.24 ``Wav2Vec2CTCTokenizer`` (``tokenization_wav2vec2.py``):
reading ``vocab.json`` with the special tokens of ``tokenizer_config.json`` /
``special_tokens_map.json`` / ``added_tokens.json``, and ``decode(ids,
output_char_offsets=True, output_word_offsets=True)`` on the per-frame argmax: ids to tokens
(unknown ids to the unk token), group repeats, drop the pad (blank) token, word delimiter to
a space, join, strip, lower-case if ``do_lower_case``. Offsets are in frames of the grouped
sequence; seconds are frames times the frame hop (320 samples / 16 kHz = 0.02 s).

Words (``Transcript.words``) are transformers' ``word_offsets`` made ready for captions in
any language: they take the text's case (``do_lower_case``), and every character of a
script written without spaces (Chinese characters, Japanese kana; :mod:`wavlm_live.text`)
is a word of its own, so character vocabularies without a word delimiter get one word per
character instead of one word per utterance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavlm_live.text import is_spaceless

from .config import read_json

_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "word_delimiter_token")
_SPECIAL_DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                     "word_delimiter_token": "|"}


def _token_text(value: Any) -> str | None:
    """A special token as stored in tokenizer files: a string, an AddedToken dict or null."""
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"special token must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class CTCVocabulary:
    """Output alphabet of a CTC checkpoint.

    tokens: token string of each id (``tokens[i]`` for id ``i``); ids outside it decode to
        ``unk_token``.
    pad_token: the CTC blank (transformers uses the pad token as blank); must be in tokens.
    word_delimiter_token: token between words ("|"), decoded as ``replace_word_delimiter_char``.
    do_lower_case: lower-case the decoded text (offsets keep the tokens' case, as transformers).
    clean_up_tokenization_spaces: apply transformers' ``clean_up_tokenization`` to the text.

    Raises ``ValueError`` if the pad token is not in ``tokens``.
    """

    tokens: tuple[str, ...]
    pad_token: str = "<pad>"
    unk_token: str = "<unk>"
    bos_token: str | None = "<s>"
    eos_token: str | None = "</s>"
    word_delimiter_token: str = "|"
    replace_word_delimiter_char: str = " "
    do_lower_case: bool = False
    clean_up_tokenization_spaces: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not all(isinstance(t, str) for t in self.tokens):
            raise ValueError("CTC vocabulary tokens must all be strings")
        if self.pad_token not in self.tokens:
            raise ValueError(f"CTC vocabulary has no pad (blank) token {self.pad_token!r}")

    @property
    def blank_id(self) -> int:
        """Id of the CTC blank (the pad token)."""
        return self.tokens.index(self.pad_token)

    pad_id = blank_id

    @property
    def unk_id(self) -> int | None:
        """Id of the unk token, or None if it has none."""
        return self.tokens.index(self.unk_token) if self.unk_token in self.tokens else None

    def __len__(self) -> int:
        return len(self.tokens)

    def token(self, token_id: int) -> str:
        """Token string of ``token_id``; the unk token for ids outside the vocabulary."""
        return self.tokens[token_id] if 0 <= token_id < len(self.tokens) else self.unk_token

    @classmethod
    def from_files(cls, folder: str | Path) -> "CTCVocabulary":
        """Read ``vocab.json`` (required) and, if present, ``tokenizer_config.json``,
        ``special_tokens_map.json`` and ``added_tokens.json`` from a checkpoint folder, with
        transformers' precedence: special tokens from the tokenizer config, overridden by
        ``special_tokens_map.json`` unless the config lists ``added_tokens_decoder``; special
        tokens missing from the vocabulary are appended (bos, eos, unk, pad, word delimiter).

        Raises ``FileNotFoundError`` without ``vocab.json``, ``ValueError`` for malformed files
        or a nested (multi-lingual) vocabulary.
        """
        folder = Path(folder)
        vocab = read_json(folder / "vocab.json")
        if not isinstance(vocab, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in vocab.values()):
            raise ValueError(f"{folder / 'vocab.json'} must map tokens to non-negative ids "
                             "(nested multi-lingual vocabularies are not supported)")
        cfg_path = folder / "tokenizer_config.json"
        cfg = read_json(cfg_path) if cfg_path.is_file() else {}
        if not isinstance(cfg, dict):
            raise ValueError(f"{cfg_path} must hold a JSON object")
        special = {k: _token_text(cfg[k]) if k in cfg else _SPECIAL_DEFAULTS[k] for k in _SPECIAL_KEYS}
        map_path = folder / "special_tokens_map.json"
        if "added_tokens_decoder" not in cfg and map_path.is_file():
            smap = read_json(map_path)
            if not isinstance(smap, dict):
                raise ValueError(f"{map_path} must hold a JSON object")
            special.update({k: _token_text(smap[k]) for k in _SPECIAL_KEYS if k in smap})

        id_to_token = {i: t for t, i in vocab.items()}
        added: dict[int, str] = {}
        if isinstance(cfg.get("added_tokens_decoder"), dict):
            added = {int(i): _token_text(t) for i, t in cfg["added_tokens_decoder"].items()}
        elif (folder / "added_tokens.json").is_file():
            extra = read_json(folder / "added_tokens.json")
            if not isinstance(extra, dict):
                raise ValueError(f"{folder / 'added_tokens.json'} must map tokens to ids")
            added = {int(i): t for t, i in extra.items()}
        for i, t in added.items():
            id_to_token.setdefault(i, t)
        known = set(id_to_token.values())
        for key in _SPECIAL_KEYS:
            t = special[key]
            if t is not None and t not in known:  # transformers appends it at id len(tokenizer)
                id_to_token.setdefault(len(known), t)
                known.add(t)

        unk = special["unk_token"] or _SPECIAL_DEFAULTS["unk_token"]
        size = max(id_to_token) + 1 if id_to_token else 0
        tokens = tuple(id_to_token.get(i, unk) for i in range(size))
        return cls(
            tokens=tokens,
            pad_token=special["pad_token"] or _SPECIAL_DEFAULTS["pad_token"],
            unk_token=unk,
            bos_token=special["bos_token"],
            eos_token=special["eos_token"],
            word_delimiter_token=special["word_delimiter_token"] or "|",
            replace_word_delimiter_char=cfg.get("replace_word_delimiter_char", " "),
            do_lower_case=bool(cfg.get("do_lower_case", False)),
            clean_up_tokenization_spaces=bool(cfg.get("clean_up_tokenization_spaces", False)),
        )

    def to_files(self, folder: str | Path) -> None:
        """Write ``vocab.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` that
        both :meth:`from_files` and transformers' ``Wav2Vec2CTCTokenizer`` read back to the same
        vocabulary. Creates ``folder`` if needed."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        vocab: dict[str, int] = {}
        for i, t in enumerate(self.tokens):
            vocab.setdefault(t, i)
        special = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token,
                   "pad_token": self.pad_token}
        config = {
            "tokenizer_class": "Wav2Vec2CTCTokenizer",
            **special,
            "word_delimiter_token": self.word_delimiter_token,
            "replace_word_delimiter_char": self.replace_word_delimiter_char,
            "do_lower_case": self.do_lower_case,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
        }
        for name, obj in (("vocab.json", vocab), ("tokenizer_config.json", config),
                          ("special_tokens_map.json", special)):
            (folder / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class CharOffset:
    """One decoded character (grouped token): frames ``[start_frame, end_frame)``."""

    char: str
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class WordOffset:
    """One decoded word: frames ``[start_frame, end_frame)`` and the same span in seconds
    (``frame * frame_seconds``) from the start of the decoded logits."""

    word: str
    start_frame: int
    end_frame: int
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """Greedy CTC decode of one utterance: ``text`` as transformers' tokenizer returns it,
    ``chars`` its ``char_offsets`` (word delimiters appear as ``" "``), ``words`` its
    ``word_offsets`` with the text's case and each spaceless-script character (Chinese,
    Japanese) a word of its own (see the module docstring)."""

    text: str
    chars: list[CharOffset]
    words: list[WordOffset]


def _clean_up(text: str) -> str:
    """transformers' ``PreTrainedTokenizerBase.clean_up_tokenization``."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def spaceless_token(token: str) -> bool:
    """Whether a vocabulary token is a word by itself: all its characters belong to scripts
    written without spaces (:func:`wavlm_live.text.is_spaceless`: Chinese, Japanese)."""
    return bool(token) and all(is_spaceless(ch) for ch in token)


class CTCDecoder:
    """Greedy CTC decoder reproducing ``Wav2Vec2CTCTokenizer.decode`` with char and word
    offsets.

    ``frame_seconds`` is the hop between logit frames in seconds (0.02 = 320 samples at
    16 kHz); word times are ``frame * frame_seconds``. Raises ``ValueError`` for a
    non-positive hop.
    """

    def __init__(self, vocab: CTCVocabulary, frame_seconds: float = 0.02):
        if not frame_seconds > 0:
            raise ValueError(f"frame_seconds must be > 0, got {frame_seconds!r}")
        self.vocab = vocab
        self.frame_seconds = float(frame_seconds)
        self.char_word_ids = frozenset(i for i, t in enumerate(vocab.tokens) if spaceless_token(t))
        """Ids of tokens that are words by themselves (spaceless-script characters)."""

    def decode(self, logits_or_ids) -> Transcript:
        """Decode one utterance.

        Args:
            logits_or_ids: logits ``[T, C]`` (float; argmax per frame, first index on ties)
                or token ids ``[T]`` (int), as ``torch.Tensor``, ``numpy.ndarray`` or list.

        Raises ``ValueError`` for other shapes (decode batches one row at a time) and
        ``TypeError`` for other types.
        """
        ids = self._ids(logits_or_ids)
        vocab = self.vocab
        tokens = [vocab.token(i) for i in ids]
        if not tokens:
            return Transcript("", [], [])
        groups = [(t, len(list(g))) for t, g in groupby(tokens)]
        delim, space = vocab.word_delimiter_token, vocab.replace_word_delimiter_char
        chars: list[CharOffset] = []
        end = 0
        for token, reps in groups:
            start, end = end, end + reps
            if token != vocab.pad_token:
                chars.append(CharOffset(space if token == delim else token, start, end))
        text = "".join(c.char for c in chars).strip()
        if vocab.do_lower_case:
            text = text.lower()
        if vocab.clean_up_tokenization_spaces:
            text = _clean_up(text)
        return Transcript(text, chars, self._words(chars, space))

    def _words(self, chars: list[CharOffset], space: str) -> list[WordOffset]:
        """transformers' ``Wav2Vec2CTCTokenizer._get_word_offsets``, then each word split
        where it holds spaceless tokens (every such token a word, the runs between them
        words) and lower-cased with ``do_lower_case``."""
        groups: list[list[CharOffset]] = []  # the characters of each of transformers' words
        last_state = "SPACE"
        for c in chars:
            state = "SPACE" if c.char == space else "WORD"
            if state == "WORD":
                if last_state == "SPACE":
                    groups.append([])
                groups[-1].append(c)
            last_state = state
        fs = self.frame_seconds
        lower = self.vocab.do_lower_case
        words = []
        for group in groups:
            run: list[CharOffset] = []
            for c in group + [None]:  # None flushes the last run
                if c is not None and not spaceless_token(c.char):
                    run.append(c)
                    continue
                for piece in (run, [c] if c is not None else []):
                    if piece:
                        text = "".join(p.char for p in piece)
                        s, e = piece[0].start_frame, piece[-1].end_frame
                        words.append(WordOffset(text.lower() if lower else text, s, e, s * fs, e * fs))
                run = []
        return words

    @staticmethod
    def _ids(x) -> list[int]:
        if isinstance(x, list):
            x = np.asarray(x)
        if isinstance(x, torch.Tensor):
            if x.dim() == 2:
                return x.argmax(dim=-1).tolist()
            if x.dim() == 1 and (not x.is_floating_point() or x.numel() == 0):
                return x.tolist()
            raise ValueError(f"decode expects logits [T, C] or ids [T], got a tensor of shape {tuple(x.shape)} "
                             f"and dtype {x.dtype}")
        if isinstance(x, np.ndarray):
            if x.ndim == 2:
                return x.argmax(axis=-1).tolist()
            if x.ndim == 1 and (np.issubdtype(x.dtype, np.integer) or x.size == 0):
                return x.astype(np.int64).tolist()
            raise ValueError(f"decode expects logits [T, C] or ids [T], got an array of shape {x.shape} "
                             f"and dtype {x.dtype}")
        raise TypeError(f"decode expects a torch.Tensor, numpy.ndarray or list, got {type(x).__name__}")
