"""Word n-gram language models (ARPA format) and CTC prefix beam search with shallow fusion.

The beam search is the CTC prefix beam search of Hannun et al. 2014 ("First-Pass Large
Vocabulary Continuous Speech Recognition using Bi-Directional Recurrent DNNs",
arXiv:1408.2873): every hypothesis keeps the log-probability of its collapsed label prefix
ending in a blank and in a non-blank, and a word's language-model score
``alpha * ln p(word | history) + beta`` is added when the word delimiter closes it. As in
pyctcdecode (the decoder behind transformers' ``Wav2Vec2ProcessorWithLM``), a partial word
that is no prefix of any word the model knows gets ``unk_score_offset`` once, and the
settings live in a checkpoint's ``language_model/attrs.json`` next to the ARPA file.

The ARPA builder (:func:`build_arpa`) implements interpolated Kneser-Ney smoothing (Chen &
Goodman 1998, "An Empirical Study of Smoothing Techniques for Language Modeling", section
3.5) with KenLM's convention that n-grams starting with ``<s>`` keep their raw counts in
lower orders.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from wavlm_live.text import join_words

from .ctc import CharOffset, CTCVocabulary, Transcript, WordOffset, spaceless_token

LN10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def _fold(word: str) -> str:
    """``word`` case-folded, except the special tokens ``<s>``, ``</s>`` and ``<unk>``."""
    return word if word in (BOS, EOS, UNK) else word.casefold()


class NGramLM:
    """A backoff word n-gram model read from an ARPA file (plain or ``.gz``).

    Words are case-folded on load and lookup, so an upper-case CTC vocabulary works with a
    lower-case ARPA and the reverse.

    Args:
        ngrams: ``{(w1, ..., wn): (log10 prob, log10 backoff)}`` for every listed n-gram,
            words case-folded (as :meth:`from_arpa` stores them).

    Raises ``ValueError`` when there are no unigrams.
    """

    def __init__(self, ngrams: dict[tuple[str, ...], tuple[float, float]]):
        if not any(len(k) == 1 for k in ngrams):
            raise ValueError("n-gram model has no unigrams")
        self._ngrams = ngrams
        self.order = max(len(k) for k in ngrams)
        self.vocabulary = frozenset(k[0] for k in ngrams if len(k) == 1) - {BOS, EOS, UNK}
        self._prefixes = frozenset(w[:i] for w in self.vocabulary for i in range(1, len(w) + 1))
        unk = ngrams.get((UNK,))
        self._unk_log10 = unk[0] if unk else -100.0
        self.score = lru_cache(maxsize=1 << 16)(self._score)

    @classmethod
    def from_arpa(cls, path: str | Path) -> "NGramLM":
        """Read an ARPA file (``*.gz`` is decompressed).

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the line
        for a malformed one."""
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        ngrams: dict[tuple[str, ...], tuple[float, float]] = {}
        order = 0
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    line = line.strip()
                    if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                        continue
                    if line.startswith("\\") and line.endswith("-grams:"):
                        order = int(line[1:line.index("-")])
                        continue
                    parts = line.split()
                    if order == 0 or len(parts) not in (order + 1, order + 2):
                        raise ValueError(f"{path}:{lineno}: not an ARPA {order}-gram line: {line[:80]!r}")
                    backoff = float(parts[order + 1]) if len(parts) == order + 2 else 0.0
                    words = tuple(_fold(w) for w in parts[1:order + 1])
                    ngrams[words] = (float(parts[0]), backoff)
        except FileNotFoundError:
            raise
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read ARPA file {path}: {e}") from e
        return cls(ngrams)

    def is_prefix(self, partial: str) -> bool:
        """Whether ``partial`` (case-folded) begins some word of the vocabulary."""
        return partial.casefold() in self._prefixes

    def _score(self, history: tuple[str, ...], word: str) -> float:
        """``log10 p(word | history)`` with Katz-style backoff through ARPA backoff weights;
        ``history`` is truncated to ``order - 1`` words; unknown words score as ``<unk>``."""
        word = _fold(word)
        if (word,) not in self._ngrams:
            return self._unk_log10
        history = history[len(history) - self.order + 1:] if self.order > 1 else ()
        history = tuple(_fold(w) for w in history)
        backoff = 0.0
        for i in range(len(history) + 1):
            ctx = history[i:]
            entry = self._ngrams.get(ctx + (word,))
            if entry is not None:
                return backoff + entry[0]
            ctx_entry = self._ngrams.get(ctx)
            if ctx_entry is not None:
                backoff += ctx_entry[1]
        raise AssertionError("unreachable: the unigram exists")


def build_arpa(sentences: Iterable[str], path: str | Path, order: int = 3, discount: float = 0.75) -> dict[int, int]:
    """Write an interpolated Kneser-Ney ARPA model of whitespace-tokenised sentences.

    Each sentence is wrapped in ``<s> ... </s>``; ``<unk>`` gets the uniform share of the
    unigram distribution. Lower orders use continuation counts (the number of distinct
    words seen before the n-gram), except n-grams that start with ``<s>``, which keep raw
    counts (as KenLM's ``lmplz``).

    Args:
        sentences: one sentence per item, words separated by whitespace.
        path: output file; ``*.gz`` is gzip-compressed.
        order: n-gram order, >= 1.
        discount: absolute discount D in (0, 1) of every order.

    Returns:
        ``{n: number of n-grams}`` as written in the ARPA header.

    Raises ``ValueError`` for a bad order or discount, or no words at all.
    """
    if order < 1 or not 0 < discount < 1:
        raise ValueError(f"need order >= 1 and 0 < discount < 1, got {order}, {discount}")
    raw: Counter[tuple[str, ...]] = Counter()
    for s in sentences:
        words = [BOS, *s.split(), EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                raw[tuple(words[i:i + n])] += 1
    if not any(len(k) == 1 and k[0] not in (BOS, EOS) for k in raw):
        raise ValueError("no words to build a language model from")
    # Adjusted counts: continuation counts below the top order, raw counts for <s>-initial.
    cont: Counter[tuple[str, ...]] = Counter(k[1:] for k in raw if len(k) > 1)
    counts = {k: (c if len(k) == order or k[0] == BOS else cont[k]) for k, c in raw.items()}
    counts = {k: c for k, c in counts.items() if c > 0 and k != (BOS,)}  # <s> is never predicted
    # Per-context totals and the number of distinct followers, by order.
    total: defaultdict[tuple[str, ...], int] = defaultdict(int)
    followers: defaultdict[tuple[str, ...], int] = defaultdict(int)
    for k, c in counts.items():
        total[k[:-1]] += c
        followers[k[:-1]] += 1
    vocab_size = sum(1 for k in counts if len(k) == 1) + 1  # words and </s>, + <unk>

    by_order: defaultdict[int, list[tuple[str, ...]]] = defaultdict(list)
    for k in counts:
        by_order[len(k)].append(k)
    prob: dict[tuple[str, ...], float] = {}
    uniform = 1.0 / vocab_size
    for n in range(1, order + 1):  # lower orders first: each interpolates with the one below
        for k in by_order[n]:
            h = k[:-1]
            gamma = discount * followers[h] / total[h]
            lower = prob[k[1:]] if n > 1 else uniform
            prob[k] = max(counts[k] - discount, 0) / total[h] + gamma * lower
    prob[(UNK,)] = discount * followers[()] / total[()] * uniform
    by_order[1] += [(UNK,), (BOS,)]  # <s>: listed (log10 prob -99) for its backoff weight
    path = Path(path)
    sizes = {n: len(by_order[n]) for n in range(1, order + 1)}
    if path.suffix == ".gz":  # mtime 0: the same sentences give the same bytes
        f = io.TextIOWrapper(gzip.GzipFile(path, "wb", mtime=0), encoding="utf-8")
    else:
        f = open(path, "w", encoding="utf-8")
    with f:
        f.write("\\data\\\n" + "".join(f"ngram {n}={sizes[n]}\n" for n in sizes) + "\n")
        for n in range(1, order + 1):
            f.write(f"\\{n}-grams:\n")
            for k in sorted(by_order[n]):
                lp = -99.0 if k == (BOS,) else math.log10(prob[k])
                line = f"{lp:.6f}\t{' '.join(k)}"
                if n < order and k in followers:
                    line += f"\t{math.log10(discount * followers[k] / total[k]):.6f}"
                f.write(line + "\n")
            f.write("\n")
        f.write("\\end\\\n")
    return sizes


@dataclass(frozen=True)
class BeamSettings:
    """Shallow-fusion settings, as pyctcdecode's ``language_model/attrs.json`` (whose
    defaults alpha 0.5, beta 1.5, unk_score_offset -10 these share).

    alpha: weight of the LM's natural-log word probability.
    beta: bonus per word (counters the LM's bias to short outputs).
    unk_score_offset: added once when a partial word leaves the LM's vocabulary prefixes.
    unk_char_offset: added for every character of a word outside the vocabulary, so that
        running words together into one unknown word is no way to escape their LM scores.
    beam_width: hypotheses kept per frame.
    token_min_logp: tokens below this natural-log probability in a frame are not extended
        (the blank and the frame's best token always are).
    """

    alpha: float = 0.5
    beta: float = 1.5
    unk_score_offset: float = -10.0
    unk_char_offset: float = -1.0
    beam_width: int = 16
    token_min_logp: float = -8.0

    def __post_init__(self) -> None:
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {self.beam_width}")

    @classmethod
    def from_json(cls, path: str | Path) -> "BeamSettings":
        """Read ``attrs.json``; unknown keys (e.g. pyctcdecode's ``score_boundary``) are
        ignored. Raises ``ValueError`` for a malformed file or non-numeric values."""
        try:
            attrs = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read {path}: {e}") from e
        if not isinstance(attrs, dict):
            raise ValueError(f"{path} must hold a JSON object")
        kwargs = {}
        for key in ("alpha", "beta", "unk_score_offset", "unk_char_offset", "beam_width", "token_min_logp"):
            if key in attrs:
                value = attrs[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{path}: {key} must be a number, got {value!r}")
                kwargs[key] = int(value) if key == "beam_width" else float(value)
        return cls(**kwargs)


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


class _Beam:
    """One hypothesis: collapsed label prefix, acoustic log-probs ending in blank /
    non-blank, LM score, completed words with frame spans and the open word."""

    __slots__ = ("p_b", "p_nb", "lm", "last", "words", "partial", "w_start", "w_end", "oov")

    def __init__(self, lm: float, last: int, words: tuple, partial: str, w_start: int, w_end: int, oov: bool):
        self.p_b = self.p_nb = -math.inf
        self.lm, self.last, self.words, self.partial = lm, last, words, partial
        self.w_start, self.w_end, self.oov = w_start, w_end, oov

    def total(self) -> float:
        return _logaddexp(self.p_b, self.p_nb) + self.lm


class CTCBeamDecoder:
    """CTC prefix beam search with a word n-gram LM (shallow fusion).

    Returns the same :class:`~wavlm_live.model.ctc.Transcript` as the greedy
    :class:`~wavlm_live.model.ctc.CTCDecoder` (words with frame offsets; ``chars`` holds one
    entry per word character, spanning the word). Word frames are where the hypothesis
    emitted the word's first and last label (an end frame is exclusive).

    Words close at the word delimiter (``|``). A token that is a word by itself (a Chinese
    or Japanese character, :func:`~wavlm_live.model.ctc.spaceless_token`) closes the open
    word and is a word of its own at once, so character vocabularies without a delimiter
    get an LM score per character (a character n-gram LM, or a word LM of single-character
    words). Words and text take the vocabulary's ``do_lower_case``; the text joins words as
    :func:`wavlm_live.text.join_words` (no space between two Chinese / Japanese characters).

    Args:
        vocab: the CTC vocabulary (blank = pad token); logits may have fewer columns than it
            has tokens (special tokens appended past the model's head never occur).
        lm: the language model, or ``None`` for a plain CTC beam search.
        settings: fusion weights and beam size.
        frame_seconds: hop between logit frames (0.02 s for WavLM).

    Raises ``ValueError`` when the vocabulary has neither a word delimiter token nor tokens
    that are words by themselves (nothing could ever close a word).
    """

    def __init__(self, vocab: CTCVocabulary, lm: NGramLM | None, settings: BeamSettings = BeamSettings(),
                 frame_seconds: float = 0.02):
        self._char_word = [spaceless_token(t) for t in vocab.tokens]
        self.delim = vocab.tokens.index(vocab.word_delimiter_token) if vocab.word_delimiter_token in vocab.tokens \
            else -1
        if self.delim < 0 and not any(self._char_word):
            raise ValueError("beam search needs a vocabulary with a word delimiter token or character words")
        self.vocab, self.lm, self.settings = vocab, lm, settings
        self.frame_seconds = frame_seconds
        self.blank = vocab.blank_id
        special = {vocab.pad_token, vocab.unk_token, vocab.bos_token, vocab.eos_token}
        self._text = [t if t not in special else "" for t in vocab.tokens]
        if self.delim >= 0:
            self._text[self.delim] = ""
            self._char_word[self.delim] = False

    def describe(self) -> str:
        """One line naming the search and its LM, e.g. for reports."""
        lm = f"{self.lm.order}-gram LM of {len(self.lm.vocabulary)} words" if self.lm is not None else "no LM"
        return f"beam search (width {self.settings.beam_width}, {lm}, alpha {self.settings.alpha}, beta {self.settings.beta})"

    def _word_score(self, prefix: tuple[str, ...], words: tuple, word: str) -> float:
        if self.lm is None:
            return 0.0
        n = self.lm.order - 1
        history = (*prefix, *(w[0] for w in words))[-n:] if n else ()
        return self.settings.alpha * self.lm.score(history, word) * LN10 + self.settings.beta

    def decode(self, logits, context: Sequence[str] = ()) -> Transcript:
        """Decode one utterance, or one piece of a longer one.

        Args:
            logits: float array-like ``[T, C]`` (logits or log-probabilities; a
                log-softmax is applied), ``C`` at most the vocabulary's size.
            context: the words just before these logits in the same utterance (the LM
                history of the first word); empty: the logits start an utterance
                (history ``<s>``).

        Raises ``ValueError`` for another shape.
        """
        n = self.lm.order - 1 if self.lm is not None else 0
        prefix = tuple(context)[-n:] if context and n else (BOS,)
        x = np.asarray(logits, dtype=np.float32)
        if x.ndim != 2 or not 0 < x.shape[1] <= len(self.vocab) or x.shape[1] <= self.blank:
            raise ValueError(f"expected logits [T, <= {len(self.vocab)}] holding the blank, got shape {x.shape}")
        x = x - x.max(axis=1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        s, lm = self.settings, self.lm
        root = _Beam(0.0, -1, (), "", 0, 0, False)
        root.p_b = 0.0
        beams = {((), ""): root}
        for t, row in enumerate(logp):
            blank_lp = float(row[self.blank])
            cands = np.flatnonzero(row >= s.token_min_logp)
            nxt: dict[tuple, _Beam] = {}

            def get(key, src: _Beam, **changes) -> _Beam:
                b = nxt.get(key)
                if b is None:
                    fields = dict(lm=src.lm, last=src.last, words=src.words, partial=src.partial,
                                  w_start=src.w_start, w_end=src.w_end, oov=src.oov)
                    fields.update(changes)
                    b = nxt[key] = _Beam(**fields)
                return b

            for key, b in beams.items():
                p = _logaddexp(b.p_b, b.p_nb)
                stay = get(key, b)
                stay.p_b = _logaddexp(stay.p_b, p + blank_lp)
                for c in cands:
                    c = int(c)
                    if c == self.blank:
                        continue
                    lp = float(row[c])
                    if c == b.last:  # repeat without a blank between: same prefix
                        stay.p_nb = _logaddexp(stay.p_nb, b.p_nb + lp)
                        if b.p_nb + lp > p + blank_lp:  # the label, not a blank, goes on
                            if b.partial:
                                stay.w_end = max(stay.w_end, t + 1)
                            elif self._char_word[c] and stay.words:  # a character word goes on
                                w, ws, we = stay.words[-1]
                                stay.words = stay.words[:-1] + ((w, ws, max(we, t + 1)),)
                        src_p = b.p_b
                    else:
                        src_p = p
                    if src_p == -math.inf:
                        continue
                    if c == self.delim or self._char_word[c]:
                        if not b.partial and c == self.delim:
                            ext = get(key, b)  # a delimiter with no open word changes nothing
                            ext.p_nb = _logaddexp(ext.p_nb, src_p + lp)
                            ext.last = c
                            continue
                        words, score = b.words, b.lm
                        if b.partial:  # close the open word
                            score += self._word_score(prefix, words, b.partial)
                            words = words + ((b.partial, b.w_start, b.w_end),)
                        if self._char_word[c]:  # the character is a word of its own
                            score += self._word_score(prefix, words, self._text[c])
                            words = words + ((self._text[c], t, t + 1),)
                        nkey = (tuple(w[0] for w in words), "")
                        ext = get(nkey, b, lm=score, last=c, words=words, partial="", oov=False)
                    else:
                        ch = self._text[c]
                        partial = b.partial + ch
                        nkey = (key[0], partial)
                        penalty = 0.0
                        oov = b.oov
                        if lm is not None and not oov and not lm.is_prefix(partial):
                            penalty, oov = s.unk_score_offset, True
                        if oov:
                            penalty += s.unk_char_offset
                        ext = get(nkey, b, lm=b.lm + penalty, last=c, partial=partial,
                                  w_start=b.w_start if b.partial else t, w_end=t + 1, oov=oov)
                    ext.p_nb = _logaddexp(ext.p_nb, src_p + lp)
            beams = dict(sorted(nxt.items(), key=lambda kv: kv[1].total(), reverse=True)[:s.beam_width])

        def final(b: _Beam) -> float:
            return b.total() + (self._word_score(prefix, b.words, b.partial) if b.partial else 0.0)

        b = max(beams.values(), key=final)
        words = b.words + (((b.partial, b.w_start, b.w_end),) if b.partial else ())
        words = tuple(w for w in words if w[0])
        fs = self.frame_seconds
        lower = self.vocab.do_lower_case
        offsets = [WordOffset(w.lower() if lower else w, st, en, st * fs, en * fs) for w, st, en in words]
        chars: list[CharOffset] = []
        for i, w in enumerate(offsets):
            if i:
                chars.append(CharOffset(self.vocab.replace_word_delimiter_char, offsets[i - 1].end_frame, w.start_frame))
            chars += [CharOffset(ch, w.start_frame, w.end_frame) for ch in w.word]
        return Transcript(join_words(w.word for w in offsets), chars, offsets)


ATTRS_FILE = "attrs.json"


def load_language_model(path: str | Path) -> tuple[NGramLM, BeamSettings]:
    """Read a language model for :class:`CTCBeamDecoder`.

    Args:
        path: an ARPA file (``*.arpa`` or ``*.arpa.gz``), or a folder (a checkpoint's
            ``language_model/``, as transformers' ``Wav2Vec2ProcessorWithLM`` saves it) that
            holds exactly one such file and optionally ``attrs.json`` with the fusion
            settings (:class:`BeamSettings`; defaults where absent).

    Raises:
        FileNotFoundError: the path does not exist, or the folder holds no ARPA file.
        ValueError: several ARPA files, only a KenLM binary (``*.bin``/``*.binary``, which
            this decoder cannot read: convert it to ARPA with KenLM), or a malformed file.
    """
    path = Path(path)
    settings = BeamSettings()
    if path.is_dir():
        if (path / ATTRS_FILE).is_file():
            settings = BeamSettings.from_json(path / ATTRS_FILE)
        arpas = sorted(p for p in path.iterdir() if p.name.endswith((".arpa", ".arpa.gz")))
        if not arpas:
            binaries = [p.name for p in path.iterdir() if p.suffix in (".bin", ".binary")]
            if binaries:
                raise ValueError(f"{path} holds only a KenLM binary model ({', '.join(binaries)}); this decoder "
                                 "reads ARPA files only (the .arpa that KenLM's lmplz writes); pass one")
            raise FileNotFoundError(f"no .arpa or .arpa.gz language model in {path}")
        if len(arpas) > 1:
            raise ValueError(f"{path} holds several ARPA files ({', '.join(p.name for p in arpas)}); keep one")
        path = arpas[0]
    elif not path.exists():
        raise FileNotFoundError(f"language model {path} does not exist")
    return NGramLM.from_arpa(path), settings
