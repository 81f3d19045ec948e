"""Word n-gram language models through KenLM, and CTC prefix beam search with shallow fusion.

The n-gram engine is the ``kenlm`` library (Heafield 2011, "KenLM: Faster and Smaller
Language Model Queries"): ARPA files (plain or gzip) and KenLM binary files (``.bin``,
made by KenLM's ``build_binary``) are queried in C++, so a large model's load time and
memory are the library's (a binary is memory-mapped) and nothing is read into Python
dictionaries except the unigram list used for prefix checks.

Language-model folders are read as transformers' ``Wav2Vec2ProcessorWithLM`` and
pyctcdecode (its decoder) write them: ``attrs.json`` (``alpha``, ``beta``,
``unk_score_offset``, ``score_boundary``), ``unigrams.txt`` (one word per line) and one
KenLM file (``.arpa`` / ``.bin`` / ``.binary``; ``.arpa.gz`` is read too).

The beam search is the CTC prefix beam search of Hannun et al. 2014 ("First-Pass Large
Vocabulary Continuous Speech Recognition using Bi-Directional Recurrent DNNs",
arXiv:1408.2873): every hypothesis keeps the log-probability of its collapsed label prefix
ending in a blank and in a non-blank, and a word's language-model score
``alpha * ln p(word | history) + beta`` is added when the word delimiter closes it. As in
pyctcdecode, a word the model does not know gets ``unk_score_offset`` once: when a partial
word stops being a prefix of any known word, or, for a word that is a prefix of known words
but not one itself ("NUCLEA"), when it closes; with ``score_boundary`` the utterance is
scored from ``<s>`` to ``</s>``.

The ARPA builder (:func:`build_arpa`) implements interpolated Kneser-Ney smoothing (Chen &
Goodman 1998, "An Empirical Study of Smoothing Techniques for Language Modeling", section
3.5) with KenLM's convention that n-grams starting with ``<s>`` keep their raw counts in
lower orders.
"""

from __future__ import annotations

import bisect
import gzip
import io
import json
import math
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from wavlm_live.text import join_words

from .ctc import CharOffset, CTCVocabulary, Transcript, WordOffset, spaceless_token

LN10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_SPECIAL_WORDS = frozenset((BOS, EOS, UNK))

ATTRS_FILE = "attrs.json"
UNIGRAMS_FILE = "unigrams.txt"
MODEL_SUFFIXES = (".arpa", ".bin", ".binary", ".arpa.gz")
"""File names a language-model folder's KenLM model may have (pyctcdecode accepts the first three)."""


def read_arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA file's ``\\1-grams:`` section (plain or ``.gz``), without
    ``<s>``, ``</s>``, ``<unk>``, in file order; reading stops at the next section, so a
    large model costs only its unigrams. Raises ``ValueError`` for a file without unigrams
    or that cannot be decoded."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    inside = False
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line == "\\1-grams:":
                    inside = True
                elif inside and line.startswith("\\"):
                    break
                elif inside and line:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1] not in _SPECIAL_WORDS:
                        words.append(parts[1])
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the unigrams of ARPA file {path}: {e}") from None
    if not inside:
        raise ValueError(f"{path} has no \\1-grams: section; is it an ARPA file?")
    return words


def _kenlm_error(path: Path, e: Exception) -> ValueError:
    """kenlm's ``OSError`` as one sentence without the C++ source location."""
    text = str(e)
    text = re.sub(r"^Cannot read model '.*?' \(", "", text).rstrip(")")
    text = re.sub(r"^\S+:\d+ in .*? threw \w+\.?\s*", "", text)
    text = re.sub(r"^\S+:\d+ in .*? threw \w+ because `.*?'\.\s*", "", text)
    return ValueError(f"cannot read language model {path}: {text.strip() or type(e).__name__}")


class KenLM:
    """A word n-gram model (ARPA or KenLM binary) queried through the ``kenlm`` library.

    Words are matched to the model's spelling: a word is looked up as given, else
    lower-cased, else upper-cased (the first form the model knows), so an upper-case CTC
    vocabulary (LibriSpeech) works with a lower-case LM and the reverse. Prefix checks
    ("does a known word start with this partial word?") use the unigram list, case-folded,
    as a sorted list searched by bisection (``unigrams.txt`` of a Hub folder, or the ARPA
    file's 1-grams; a binary file without a unigram list has none, and then no partial word
    counts as unknown, as in pyctcdecode).

    Args:
        path: ARPA (``.arpa``, ``.arpa.gz``) or KenLM binary file.
        unigrams: the model's words (e.g. from ``unigrams.txt``); ``None``: read them from an
            ARPA file, none for a binary one. Words the model does not know are dropped (as
            pyctcdecode does).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one sentence naming
    the file) for one kenlm cannot read.
    """

    def __init__(self, path: str | Path, unigrams: Iterable[str] | None = None):
        import kenlm

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"language model {path} does not exist")
        config = kenlm.Config()
        config.show_progress = False
        config.arpa_complain = kenlm.ARPALoadComplain.NONE
        try:
            self._model = kenlm.Model(str(path), config)
        except OSError as e:
            raise _kenlm_error(path, e) from None
        self._kenlm = kenlm
        self.path = path
        self.order: int = int(self._model.order)
        if unigrams is None and not _is_binary(path):
            unigrams = read_arpa_unigrams(path)
        if unigrams is not None:
            known = {w for w in unigrams if w and w not in _SPECIAL_WORDS and w in self._model}
            self._folded: list[str] | None = sorted({w.casefold() for w in known})
            self.vocabulary_size = len(known)
        else:
            self._folded = None
            self.vocabulary_size = 0
        self.lm_word = lru_cache(maxsize=1 << 16)(self._lm_word)
        self.is_prefix = lru_cache(maxsize=1 << 16)(self._is_prefix)
        self.knows = lru_cache(maxsize=1 << 16)(self._knows)

    @property
    def words(self) -> tuple[str, ...]:
        """The unigram list, case-folded and sorted (empty without one)."""
        return tuple(self._folded or ())

    @property
    def has_unigrams(self) -> bool:
        """Whether prefix checks are possible (a unigram list was given or read)."""
        return self._folded is not None

    def describe(self) -> str:
        """e.g. "3-gram LM of 200000 words (lm.bin)"."""
        words = f"{self.vocabulary_size} words" if self.has_unigrams else "no unigram list"
        return f"{self.order}-gram LM of {words} ({self.path.name})"

    def _lm_word(self, word: str) -> str:
        """``word`` in the model's spelling: as given, lower-cased or upper-cased, the first
        the model knows; ``word`` itself when it knows none (an unknown word)."""
        for form in (word, word.lower(), word.upper()):
            if form in self._model:
                return form
        return word

    def _knows(self, word: str) -> bool:
        """Whether ``word`` (in any of its case forms) is a word of the model, and of the
        unigram list when there is one (pyctcdecode's rule for the unknown-word offset)."""
        form = self.lm_word(word)
        if form in _SPECIAL_WORDS or form not in self._model:
            return False
        if self._folded is None:
            return True
        f = form.casefold()
        i = bisect.bisect_left(self._folded, f)
        return i < len(self._folded) and self._folded[i] == f

    def _is_prefix(self, partial: str) -> bool:
        """Whether ``partial`` (case-folded) begins some word of the unigram list; always
        True without one."""
        if self._folded is None:
            return True
        p = partial.casefold()
        i = bisect.bisect_left(self._folded, p)
        return i < len(self._folded) and self._folded[i].startswith(p)

    def start(self, context: Sequence[str] = (), sentence_start: bool = True):
        """The LM state before the first word: after ``<s>`` (``sentence_start``) or with no
        context, then after the last ``order - 1`` words of ``context``."""
        state, out = self._kenlm.State(), self._kenlm.State()
        context = tuple(context)[-(self.order - 1):] if self.order > 1 and context else ()
        if sentence_start and not context:
            self._model.BeginSentenceWrite(state)
        else:
            self._model.NullContextWrite(state)
        for w in context:
            self._model.BaseScore(state, self.lm_word(w), out)
            state, out = out, state
        return state

    def score(self, state, word: str):
        """``(log10 p(word | state), state after word)``; an unknown word scores as ``<unk>``."""
        out = self._kenlm.State()
        return self._model.BaseScore(state, self.lm_word(word), out), out

    def end(self, state) -> float:
        """``log10 p(</s> | state)``."""
        return self._model.BaseScore(state, EOS, self._kenlm.State())

    def log10(self, history: Sequence[str], word: str) -> float:
        """``log10 p(word | history)`` (history without ``<s>``: no context; starting with it:
        a sentence start). For tests and tools."""
        history = tuple(history)
        start = bool(history) and history[0] == BOS
        state = self.start(history[1:] if start else history, sentence_start=start)
        if word == EOS:
            return self.end(state)
        return self.score(state, word)[0]


def _is_binary(path: Path) -> bool:
    """Whether ``path`` is a KenLM binary file (its magic string), not ARPA text."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"mmap lm "
    except OSError:
        return False


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
    """Shallow-fusion settings. The first four are pyctcdecode's ``language_model/attrs.json``
    (with its defaults); the others are this decoder's own (also read from ``attrs.json``
    when present, but never written there, so pyctcdecode still loads the folder).

    alpha: weight of the LM's natural-log word probability.
    beta: bonus per word (counters the LM's bias to short outputs).
    unk_score_offset: added once for a word the LM does not know (see the module docstring).
    score_boundary: score the first word after ``<s>`` and end the utterance with ``</s>``
        (False: no sentence context at either end).
    unk_char_offset: added for every character of a word outside the vocabulary, so that
        running words together into one unknown word is no way to escape their LM scores.
    beam_width: hypotheses kept per frame.
    token_min_logp: tokens below this natural-log probability in a frame are not extended
        (the blank and the frame's best token always are).
    """

    alpha: float = 0.5
    beta: float = 1.5
    unk_score_offset: float = -10.0
    score_boundary: bool = True
    unk_char_offset: float = -1.0
    beam_width: int = 24
    token_min_logp: float = -8.0

    PYCTCDECODE_KEYS = ("alpha", "beta", "unk_score_offset", "score_boundary")

    def __post_init__(self) -> None:
        if self.beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {self.beam_width}")

    @classmethod
    def from_json(cls, path: str | Path) -> "BeamSettings":
        """Read ``attrs.json``; unknown keys are ignored. Raises ``ValueError`` for a
        malformed file or values of the wrong type."""
        try:
            attrs = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read {path}: {e}") from e
        if not isinstance(attrs, dict):
            raise ValueError(f"{path} must hold a JSON object")
        kwargs: dict[str, Any] = {}
        for key in ("alpha", "beta", "unk_score_offset", "unk_char_offset", "beam_width", "token_min_logp"):
            if key in attrs:
                value = attrs[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{path}: {key} must be a number, got {value!r}")
                kwargs[key] = int(value) if key == "beam_width" else float(value)
        if "score_boundary" in attrs:
            if not isinstance(attrs["score_boundary"], bool):
                raise ValueError(f"{path}: score_boundary must be true or false, got {attrs['score_boundary']!r}")
            kwargs["score_boundary"] = attrs["score_boundary"]
        return cls(**kwargs)

    def attrs(self) -> dict[str, Any]:
        """The ``attrs.json`` dict pyctcdecode reads (exactly its four keys)."""
        d = asdict(self)
        return {k: (float(d[k]) if k != "score_boundary" else d[k]) for k in self.PYCTCDECODE_KEYS}


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


class _Beam:
    """One hypothesis: collapsed label prefix, acoustic log-probs ending in blank /
    non-blank, LM score, completed words with frame spans, the LM state after them, and the
    open word (``oov``: it already got the unknown-word offset)."""

    __slots__ = ("p_b", "p_nb", "lm", "last", "words", "state", "partial", "w_start", "w_end", "oov")

    def __init__(self, lm: float, last: int, words: tuple, state: Any, partial: str, w_start: int, w_end: int,
                 oov: bool):
        self.p_b = self.p_nb = -math.inf
        self.lm, self.last, self.words, self.state, self.partial = lm, last, words, state, partial
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
        lm: the language model (:class:`KenLM`, or anything with its ``order``,
            ``describe``, ``start``, ``score``, ``end``, ``knows`` and ``is_prefix``), or
            ``None`` for a plain CTC beam search.
        settings: fusion weights and beam size.
        frame_seconds: hop between logit frames (0.02 s for WavLM).

    Raises ``ValueError`` when the vocabulary has neither a word delimiter token nor tokens
    that are words by themselves (nothing could ever close a word).
    """

    def __init__(self, vocab: CTCVocabulary, lm: KenLM | None, settings: BeamSettings = BeamSettings(),
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
        lm = self.lm.describe() if self.lm is not None else "no LM"
        return f"beam search (width {self.settings.beam_width}, {lm}, alpha {self.settings.alpha}, beta {self.settings.beta})"

    def _close(self, state, word: str, penalised: bool) -> tuple[float, Any]:
        """Score of closing ``word`` after LM ``state``: ``alpha * ln p + beta``, plus
        ``unk_score_offset`` once for a word the LM does not know (unless the partial word
        already got it, ``penalised``). Returns ``(score, state after word)``."""
        if self.lm is None:
            return 0.0, None
        s = self.settings
        log10, out = self.lm.score(state, word)
        score = s.alpha * log10 * LN10 + s.beta
        if not penalised and not self.lm.knows(word):
            score += s.unk_score_offset
        return score, out

    def decode(self, logits, context: Sequence[str] = (), ends_utterance: bool = True) -> Transcript:
        """Decode one utterance, or one piece of a longer one.

        Args:
            logits: float array-like ``[T, C]`` (logits or log-probabilities; a
                log-softmax is applied), ``C`` at most the vocabulary's size.
            context: the words just before these logits in the same utterance (the LM
                history of the first word); empty: the logits start an utterance
                (history ``<s>`` with ``score_boundary``).
            ends_utterance: the utterance ends with these logits (``</s>`` is scored with
                ``score_boundary``); False for a piece that the next one continues.

        Raises ``ValueError`` for another shape.
        """
        x = np.asarray(logits, dtype=np.float32)
        if x.ndim != 2 or not 0 < x.shape[1] <= len(self.vocab) or x.shape[1] <= self.blank:
            raise ValueError(f"expected logits [T, <= {len(self.vocab)}] holding the blank, got shape {x.shape}")
        x = x - x.max(axis=1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        s, lm = self.settings, self.lm
        start = lm.start(context, sentence_start=s.score_boundary) if lm is not None else None
        root = _Beam(0.0, -1, (), start, "", 0, 0, False)
        root.p_b = 0.0
        beams = {((), ""): root}
        for t, row in enumerate(logp):
            blank_lp = float(row[self.blank])
            cands = np.flatnonzero(row >= s.token_min_logp)
            nxt: dict[tuple, _Beam] = {}

            def get(key, src: _Beam, **changes) -> _Beam:
                b = nxt.get(key)
                if b is None:
                    fields = dict(lm=src.lm, last=src.last, words=src.words, state=src.state, partial=src.partial,
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
                        words, score, state = b.words, b.lm, b.state
                        if b.partial:  # close the open word
                            gain, state = self._close(state, b.partial, b.oov)
                            score += gain
                            words = words + ((b.partial, b.w_start, b.w_end),)
                        if self._char_word[c]:  # the character is a word of its own
                            gain, state = self._close(state, self._text[c], False)
                            score += gain
                            words = words + ((self._text[c], t, t + 1),)
                        nkey = (tuple(w[0] for w in words), "")
                        ext = get(nkey, b, lm=score, last=c, words=words, state=state, partial="", oov=False)
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
            total, state = b.total(), b.state
            if b.partial:
                gain, state = self._close(state, b.partial, b.oov)
                total += gain
            if lm is not None and s.score_boundary and ends_utterance:
                total += s.alpha * lm.end(state) * LN10
            return total

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


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "__"))
                  and p.name not in (ATTRS_FILE, UNIGRAMS_FILE))


def load_language_model(path: str | Path) -> tuple[KenLM, BeamSettings]:
    """Read a language model for :class:`CTCBeamDecoder`.

    Args:
        path: a KenLM model file (ARPA ``*.arpa`` / ``*.arpa.gz`` or binary ``*.bin``), or a
            folder laid out as ``Wav2Vec2ProcessorWithLM`` / pyctcdecode save it (a Hub
            checkpoint's ``language_model/``): ``attrs.json`` (:class:`BeamSettings`;
            defaults where absent), ``unigrams.txt`` (optional here: without it the words
            come from an ARPA file's 1-grams, and a binary file has none) and exactly one
            other file, the KenLM model.

    Raises:
        FileNotFoundError: the path does not exist, or the folder holds no model file.
        ValueError: several model files, a model file kenlm cannot read, or a malformed
            ``attrs.json`` / ``unigrams.txt``.
    """
    path = Path(path)
    settings = BeamSettings()
    unigrams: list[str] | None = None
    if path.is_dir():
        if (path / ATTRS_FILE).is_file():
            settings = BeamSettings.from_json(path / ATTRS_FILE)
        if (path / UNIGRAMS_FILE).is_file():
            try:
                unigrams = (path / UNIGRAMS_FILE).read_text(encoding="utf-8").split()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"cannot read {path / UNIGRAMS_FILE}: {e}") from None
        models = _model_files(path)
        if not models:
            raise FileNotFoundError(f"no KenLM model (.arpa or .bin) in language model folder {path}")
        if len(models) > 1:
            raise ValueError(f"{path} holds several files besides attrs.json and unigrams.txt "
                             f"({', '.join(p.name for p in models)}); a language model folder holds one model file")
        path = models[0]
    elif not path.exists():
        raise FileNotFoundError(f"language model {path} does not exist")
    return KenLM(path, unigrams), settings


def write_language_model(folder: str | Path, model_file: str | Path, settings: BeamSettings = BeamSettings(),
                         unigrams: Iterable[str] | None = None, name: str | None = None) -> Path:
    """Write a language-model folder in the layout ``Wav2Vec2ProcessorWithLM`` and
    pyctcdecode read: ``attrs.json`` (pyctcdecode's four keys of ``settings``),
    ``unigrams.txt`` (``unigrams``, else the ARPA file's 1-grams; sorted, one per line) and a
    copy of ``model_file`` (named ``name`` or as it is; ``.arpa``, ``.bin`` or ``.binary``
    for pyctcdecode). Other files in ``folder`` are removed (pyctcdecode accepts no extra
    files). Creates ``folder``; returns it.

    Raises ``ValueError`` for a model file name pyctcdecode would not accept or a binary
    model without ``unigrams``."""
    folder, model_file = Path(folder), Path(model_file)
    name = name or model_file.name
    if Path(name).suffix not in (".arpa", ".bin", ".binary"):
        raise ValueError(f"model file name {name!r} must end in .arpa, .bin or .binary (pyctcdecode's rule)")
    if unigrams is None:
        if _is_binary(model_file):
            raise ValueError(f"{model_file} is a KenLM binary: pass its unigrams")
        unigrams = read_arpa_unigrams(model_file)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if model_file.resolve() != target.resolve():
        shutil.copyfile(model_file, target)
    for p in _model_files(folder):
        if p != target:
            p.unlink()
    words = sorted({w for w in unigrams if w and w not in _SPECIAL_WORDS})
    (folder / UNIGRAMS_FILE).write_text("".join(w + "\n" for w in words), encoding="utf-8")
    (folder / ATTRS_FILE).write_text(json.dumps(settings.attrs(), indent=2) + "\n", encoding="utf-8")
    return folder


def pyctcdecode_alphabet(vocab: CTCVocabulary) -> dict[str, Any]:
    """The ``alphabet.json`` that ``Wav2Vec2ProcessorWithLM`` writes next to
    ``language_model/`` for ``vocab``: the tokens by id with pyctcdecode's substitutions
    (word delimiter -> " ", ``<pad>`` / ``[PAD]`` -> "" (the blank), ``<unk>`` / ``[UNK]`` ->
    "⁇"), ``is_bpe`` false. With it a checkpoint folder loads in pyctcdecode's
    ``BeamSearchDecoderCTC.load_from_dir``; this package does not read it."""
    labels = []
    for token in vocab.tokens:
        if token == vocab.word_delimiter_token and " " not in vocab.tokens:
            labels.append(" ")
        elif re.fullmatch(r"[<\[]pad[>\]]", token, flags=re.IGNORECASE):
            labels.append("")
        elif re.fullmatch(r"[<\[]unk[>\]]", token, flags=re.IGNORECASE):
            labels.append("\u2047")
        else:
            labels.append(token)
    return {"labels": labels, "is_bpe": False}
