"""Caption stitching: per-window CTC logits -> final and partial caption events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from wavlm_live.engine.windows import FRAME_SECONDS, Window
from wavlm_live.events import CaptionEvent, Word
from wavlm_live.text import join_words


class _WordLike(Protocol):
    word: str
    start_frame: int
    end_frame: int


class _TranscriptLike(Protocol):
    words: Sequence[_WordLike]


class IdDecoder(Protocol):
    """What the stitcher needs from a CTC decoder (e.g. :class:`wavlm_live.model.CTCDecoder`):
    greedy decoding of a 1-D array of token ids into words with frame offsets relative to
    the first id. An optional ``char_word_ids`` attribute (a set of ids) names the tokens
    that are words by themselves (Chinese / Japanese characters): a word also closes after
    one of them."""

    def decode(self, ids: np.ndarray) -> _TranscriptLike: ...


class LogitsDecoder(Protocol):
    """A decoder of a segment's logits ``[frames, vocab]`` into words with frame offsets
    relative to its first frame (e.g. :class:`wavlm_live.model.lm.CTCBeamDecoder`)."""

    def decode(self, logits: np.ndarray, context: Sequence[str] = (), ends_utterance: bool = True) -> _TranscriptLike:
        """``context``: the words just before ``logits`` in the same utterance (empty at
        its start); ``ends_utterance``: False when the next segment continues this one
        (a cut for length only)."""
        ...


SpeakerLookup = Callable[[int, int], "str | None"]
"""``speaker_of(start_frame, end_frame)``: the global speaker active over most of the
absolute frames ``[start_frame, end_frame)``, or ``None``."""


class CaptionStitcher:
    """Turns the CTC logits of consecutive windows into one caption stream.

    Each window contributes the argmax ids of its settled frames ``[keep_start, keep_end)``
    (see :class:`~wavlm_live.engine.windows.WindowPlan`). Settled ids accumulate; a word is
    closed after a word-delimiter token (``|``), after a blank that follows a token that is
    a word by itself (the decoder's ``char_word_ids``: Chinese and Japanese characters,
    whose vocabularies often have no delimiter), or after ``pause_frames`` consecutive blank
    frames. A caption's text is its words joined with spaces, except between two such
    characters (:func:`wavlm_live.text.join_words`). Closed words are published once, as ``final`` caption segments that are
    phrases: a segment ends at a pause, before a change of speaker, or, in long speech
    without either, once it holds ``max_segment_words`` words or spans
    ``max_segment_seconds``. Everything not yet final plus the newest window's unsettled
    tail is the ``partial`` caption, updated every window.

    Because cuts fall only after a delimiter or a long blank run, and CTC decoding groups
    repeats and drops blanks (Graves et al. 2006, as in transformers'
    ``Wav2Vec2CTCTokenizer``), the words of all final segments equal the words of one
    greedy decode of the concatenated settled logits, except that a pause of
    ``pause_frames`` blanks inside a word splits it (set ``pause_frames=None`` to disable
    the pause rule).

    With a ``final_decoder`` (a CTC beam search with a language model), the segment
    boundaries are still found on the greedy ids, but each final segment's words are the
    final decoder's reading of that segment's settled logits; partials stay greedy, so
    the beam search runs once per segment, not once per window. A segment cut only for
    its length is continued by the next one, which the final decoder reads with the
    previous segment's words as context (its LM history); after a pause, a change of
    speaker or a gap the next segment starts afresh.

    Args:
        decoder: greedy CTC decoder over token ids (see :class:`IdDecoder`).
        blank_id: id of the CTC blank (the ``[PAD]`` token for wav2vec2-style vocabularies).
        delimiter_id: id of the word delimiter ``|``, or ``None`` if the vocabulary has none.
        pause_frames: blank frames that close a word; ``None`` disables the rule.
        speaker_of: optional lookup giving each word its speaker (segments break where
            it changes).
        keep_logits: keep a copy of every settled logit row (for tests and tools;
            grows without bound, so off by default).
        max_segment_words / max_segment_seconds: length at which a segment of speech
            without pause or speaker change is published anyway (10 words, 3 s: measured
            in docs/engine.md, "Captions").
        final_decoder: optional decoder of each final segment's logits (see
            :class:`LogitsDecoder`); ``None`` publishes the greedy words.
        speakers_settled: optional ``() -> frame``: the absolute frame up to which the
            speakers of ``speaker_of`` are settled. Final segments wait until their
            frames are (diarization may run on other windows than the captions, see
            :class:`~wavlm_live.engine.windows.Schedule`); :meth:`finish` does not wait.
    """

    def __init__(
        self,
        decoder: IdDecoder,
        blank_id: int,
        delimiter_id: int | None,
        *,
        pause_frames: int | None = 30,
        speaker_of: SpeakerLookup | None = None,
        keep_logits: bool = False,
        max_segment_words: int = 10,
        max_segment_seconds: float = 3.0,
        final_decoder: LogitsDecoder | None = None,
        speakers_settled: Callable[[], int] | None = None,
    ) -> None:
        if pause_frames is not None and pause_frames < 1:
            raise ValueError(f"pause_frames must be >= 1 or None, got {pause_frames}")
        if max_segment_words < 1 or not max_segment_seconds > 0:
            raise ValueError("max_segment_words and max_segment_seconds must be positive")
        self.max_segment_words = max_segment_words
        self.max_segment_seconds = max_segment_seconds
        self.decoder = decoder
        self.blank_id = blank_id
        self.delimiter_id = delimiter_id
        self.pause_frames = pause_frames
        self.speaker_of = speaker_of
        self.speakers_settled = speakers_settled
        self.kept_logits: list[np.ndarray] | None = [] if keep_logits else None
        self._char_words = np.array(sorted(getattr(decoder, "char_word_ids", ())), dtype=np.int64)
        self.final_decoder = final_decoder
        self._pending = np.zeros(0, dtype=np.int64)  # settled, not yet committed ids
        self._pending_logits: np.ndarray | None = None  # their logits [frames, vocab], with a final_decoder
        self._pending_start = 0  # absolute frame of _pending[0]
        self._tail = np.zeros(0, dtype=np.int64)  # unsettled ids of the newest window
        self._segment = 0
        self._context: tuple[str, ...] = ()  # words of a final segment the next one continues
        self._last_partial: tuple[int, str] | None = None
        self._gap_events: list[CaptionEvent] = []

    @property
    def settled_frames(self) -> int:
        """Absolute frame index one past the last settled frame."""
        return self._pending_start + len(self._pending)

    def add(self, window: Window, logits: np.ndarray) -> CaptionEvent | None:
        """Add one window's logits; returns a preview partial caption at once.

        The preview is the decode of every uncommitted settled id plus the window's
        unsettled tail, under the current segment number (so a following final of that
        segment replaces it). Call :meth:`commit` next to publish what the window settled;
        splitting the two lets the engine publish the preview before running the slower
        diarization that gives final words their speakers.

        Args:
            window: the window the logits were computed on.
            logits: float array ``[frames, vocab]`` with ``frames == window.frame_end -
                window.frame_start``.

        Returns:
            The preview partial, or ``None`` when it equals the previous partial.

        Raises:
            ValueError: logits of the wrong shape, or a window that settles frames that
                were already settled.
        """
        n_frames = window.frame_end - window.frame_start
        if logits.ndim != 2 or logits.shape[0] != n_frames:
            raise ValueError(f"expected logits of shape [{n_frames}, vocab], got {tuple(logits.shape)}")
        if window.keep_start < self.settled_frames:
            raise ValueError(
                f"window {window.index} settles frame {window.keep_start} again (already settled up to {self.settled_frames})"
            )
        if window.keep_start > self.settled_frames:
            # Skipped windows left a gap: what was pending ends there.
            self._gap_events += self._commit(len(self._pending))
            self._pending_start = window.keep_start
        a = window.keep_start - window.frame_start
        b = window.keep_end - window.frame_start
        kept = logits[a:b]
        if self.kept_logits is not None:
            self.kept_logits.append(np.array(kept, dtype=np.float32))
        self._pending = np.concatenate([self._pending, kept.argmax(axis=-1).astype(np.int64)])
        if self.final_decoder is not None:
            kept32 = np.array(kept, dtype=np.float32)  # a copy: the caller's array may be reused
            self._pending_logits = kept32 if self._pending_logits is None else np.concatenate([self._pending_logits, kept32])
        self._tail = logits[b:].argmax(axis=-1).astype(np.int64) if not window.final else np.zeros(0, np.int64)
        if self._gap_events:
            return None
        return self._partial(np.concatenate([self._pending, self._tail]))

    def commit(self) -> list[CaptionEvent]:
        """Publish what the last :meth:`add` settled: zero or more final segments (in
        segment order) and then the new partial, when it changed."""
        events, self._gap_events = self._gap_events, []
        while (cut := self._next_cut())[0] > 0:
            events += self._commit(*cut)
        partial = self._partial(np.concatenate([self._pending, self._tail]))
        if partial is not None:
            events.append(partial)
        return events

    def update(self, window: Window, logits: np.ndarray) -> list[CaptionEvent]:
        """:meth:`add` then :meth:`commit`, returning the committed events only."""
        self.add(window, logits)
        return self.commit()

    def finish(self) -> list[CaptionEvent]:
        """Commit every settled id (end of stream); returns the last final event and an
        empty partial when a partial was showing."""
        events, self._gap_events = self._gap_events, []
        events += self._commit(len(self._pending))
        self._tail = np.zeros(0, dtype=np.int64)
        partial = self._partial(self._tail)
        if partial is not None:
            events.append(partial)
        return events

    # -- internals -------------------------------------------------------------------

    def _closing_points(self, ids: np.ndarray) -> tuple[int, int]:
        """``(after_delimiter, after_pause)``: the largest p such that ``_pending[:p]``
        ends right after a word delimiter (or after the blank that follows a character
        word), and the smallest p such that it ends after a
        run of ``pause_frames`` blanks that follows a word (0 where there is none),
        over ``ids`` (a prefix of the pending ids)."""
        delim = pause = 0
        if self.delimiter_id is not None:
            hits = np.flatnonzero(ids == self.delimiter_id)
            if hits.size:
                delim = int(hits[-1]) + 1
        if self._char_words.size and len(ids) > 1:
            # a blank right after a character that is a word: the word is closed there, and
            # whatever follows the blank decodes on its own (no repeat can merge across it)
            after = np.flatnonzero(np.isin(ids[:-1], self._char_words) & (ids[1:] == self.blank_id))
            if after.size:
                delim = max(delim, int(after[-1]) + 2)
        if self.pause_frames is not None and len(ids) >= self.pause_frames:
            nonblank = np.flatnonzero(ids != self.blank_id)
            long = np.flatnonzero(np.diff(nonblank) - 1 >= self.pause_frames) if nonblank.size > 1 else nonblank[:0]
            if long.size:
                pause = int(nonblank[long[0]]) + 1 + self.pause_frames
            elif nonblank.size and len(ids) - 1 - int(nonblank[-1]) >= self.pause_frames:
                pause = len(ids)  # trailing pause
        return delim, pause

    def _next_cut(self) -> tuple[int, bool]:
        """Frames of ``_pending`` to publish as the next final segment (0: keep waiting),
        and whether the speech goes on past the cut (a cut for length only).

        A segment is a phrase: it ends at the first pause, before a change of speaker, or,
        for long speech without either, at the last closed word once the closed words span
        ``max_segment_seconds`` or number ``max_segment_words``. Every cut falls after a
        delimiter or a blank, so decoding the pieces equals decoding the whole. With
        ``speakers_settled``, a segment waits until the frames of its words have settled
        speakers (the pause after them needs none)."""
        if self.speakers_settled is None:
            delim, pause = self._closing_points(self._pending)
        else:
            # only cut where the words before the cut have settled speakers (the pause
            # after them needs none): the last delimiter within the settled frames, a
            # pause that starts within them
            limit = max(0, self.speakers_settled() - self._pending_start)
            delim, _ = self._closing_points(self._pending[:limit])
            _, pause = self._closing_points(self._pending[: limit + (self.pause_frames or 0)])
            if pause and pause - (self.pause_frames or 0) > limit:
                pause = 0
        p = pause or delim
        if p == 0:
            return 0, False
        words = self.decoder.decode(self._pending[:p]).words
        if not words:
            return p, False  # only blanks and delimiters: drop them silently
        if self.speakers_settled is not None and self._pending_start + words[-1].end_frame > self.speakers_settled():
            return 0, False
        if self.speaker_of is not None:
            speakers = [self.speaker_of(self._pending_start + w.start_frame, self._pending_start + w.end_frame) for w in words]
            change = next(
                (i for i in range(1, len(words)) if None not in (speakers[i], speakers[i - 1]) and speakers[i] != speakers[i - 1]),
                None,
            )
            if change is not None:
                return words[change].start_frame, False
        if pause:
            return p, False
        span = (words[-1].end_frame - words[0].start_frame) * FRAME_SECONDS
        if len(words) >= self.max_segment_words or span >= self.max_segment_seconds:
            return p, True
        return 0, False

    def _words(self, ids: np.ndarray, start_frame: int, logits: np.ndarray | None = None,
               continues: bool = False) -> list[Word]:
        if ids.size == 0:
            return []
        if logits is None:
            decoded = self.decoder.decode(ids)
        else:
            decoded = self.final_decoder.decode(logits, context=self._context,  # type: ignore[union-attr]
                                                ends_utterance=not continues)
        out = []
        for w in decoded.words:
            s, e = start_frame + w.start_frame, start_frame + w.end_frame
            speaker = self.speaker_of(s, e) if self.speaker_of else None
            out.append(Word(w.word, round(s * FRAME_SECONDS, 4), round(e * FRAME_SECONDS, 4), speaker))
        return out

    def _event(self, final: bool, words: list[Word], start_frame: int, end_frame: int) -> CaptionEvent:
        if words:
            start, end = words[0].start, words[-1].end
        else:
            start, end = start_frame * FRAME_SECONDS, end_frame * FRAME_SECONDS
        speakers = Counter(w.speaker for w in words if w.speaker is not None)
        return CaptionEvent(
            final=final,
            segment=self._segment,
            start=round(start, 4),
            end=round(end, 4),
            text=join_words(w.text for w in words),
            words=tuple(words),
            speaker=speakers.most_common(1)[0][0] if speakers else None,
        )

    def _commit(self, p: int, continues: bool = False) -> list[CaptionEvent]:
        if p <= 0:
            return []
        ids, start = self._pending[:p], self._pending_start
        self._pending = self._pending[p:]
        self._pending_start += p
        logits = None
        if self._pending_logits is not None:
            logits, self._pending_logits = self._pending_logits[:p], self._pending_logits[p:]
        words = self._words(ids, start, logits, continues)
        self._context = tuple(w.text for w in words) if continues else ()
        if not words:
            return []
        event = self._event(True, words, start, start + p)
        self._segment += 1
        return [event]

    def _partial(self, ids: np.ndarray) -> CaptionEvent | None:
        words = self._words(ids, self._pending_start)
        event = self._event(False, words, self._pending_start, self._pending_start + len(ids))
        key = (event.segment, event.text)
        if key == self._last_partial or (self._last_partial is None and not words):
            return None
        self._last_partial = key
        return event
