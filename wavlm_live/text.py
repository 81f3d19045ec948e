"""Words in scripts written with and without spaces: which characters are words of their own
(Chinese characters, Japanese kana) and how a list of words is joined back into text.

Chinese and Japanese are written without spaces between words, and their CTC vocabularies
have one token per character and often no word delimiter. Here each such character is a
word for timing and display (a caption word, an SRT cue word, an LM token), and words are
joined with a space except between two such characters. Pure Python, no dependencies.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

_SPACELESS_PREFIXES = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA",
                       "BOPOMOFO", "IDEOGRAPHIC")


@lru_cache(maxsize=4096)
def is_spaceless(char: str) -> bool:
    """Whether ``char`` (one character) belongs to a script written without spaces between
    words whose characters are words here: Han ideographs (CJK unified and compatibility,
    all extensions), Hiragana, Katakana (with the prolonged sound mark), Bopomofo, and the
    ideographic punctuation and numbers (U+3000 block: "。", "、", "〇"). By Unicode
    character name (``unicodedata``). Korean Hangul (written with spaces) and Thai
    (whose characters are not words) are not."""
    if len(char) != 1:
        return False
    name = unicodedata.name(char, "")
    return name.startswith(_SPACELESS_PREFIXES)


def split_word(word: str) -> list[tuple[str, int, int]]:
    """``word`` cut so that every spaceless character (:func:`is_spaceless`) is a word of its
    own and the runs of other characters between them stay whole: ``(text, start, end)``
    character spans. "iPhone手机" -> [("iPhone", 0, 6), ("手", 6, 7), ("机", 7, 8)]; a word
    without spaceless characters is returned whole."""
    pieces: list[tuple[str, int, int]] = []
    start = 0
    for i, ch in enumerate(word):
        if is_spaceless(ch):
            if i > start:
                pieces.append((word[start:i], start, i))
            pieces.append((ch, i, i + 1))
            start = i + 1
    if start < len(word):
        pieces.append((word[start:], start, len(word)))
    return pieces


def join_words(words: Iterable[str]) -> str:
    """Words joined into display text: a space between two words, none where both the end
    of one and the start of the next are spaceless characters. ["你", "好", "world"] ->
    "你好 world"; ["hello", "world"] -> "hello world". Empty words are skipped."""
    out: list[str] = []
    last = ""
    for w in words:
        if not w:
            continue
        if out and not (is_spaceless(last[-1]) and is_spaceless(w[0])):
            out.append(" ")
        out.append(w)
        last = w
    return "".join(out)


def display_width(text: str) -> int:
    """Terminal / subtitle display width of ``text`` in cells: 2 for East Asian wide and
    fullwidth characters (Chinese, Japanese, Korean; ``unicodedata.east_asian_width`` W or
    F), 0 for combining marks, 1 otherwise."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width
