"""Task-model runners: numpy audio windows in, numpy per-window outputs out (torch inside).

Every runner takes one window (``logits``, ``activity``, ``embed``) or a list of windows
from several streams (``*_batch``): windows of equal length are stacked into one
``[B, N]`` forward pass (exact: no padding, and per-window normalisation as for one),
windows of other lengths run in their own groups; outputs are split back by index
(the dynamic batching of Triton and Ray Serve's ``@serve.batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from wavlm_live.model import Pretrained


T = TypeVar("T")

MAX_BATCH = 32
"""Most windows stacked into one forward pass (bounds the activation memory: a 4 s
base-plus window needs about 60 MB of activations in float32)."""


def _describe(pretrained: Pretrained) -> str:
    """The model as the hello names it: its source and family, "owner/name (Wav2Vec2)"."""
    return f"{pretrained.source} ({pretrained.family})"


def length_groups(lengths: Sequence[int], max_batch: int = MAX_BATCH) -> list[list[int]]:
    """Indices grouped by equal length, each group at most ``max_batch`` long, in order of
    first appearance. ``length_groups([64000, 32000, 64000]) == [[0, 2], [1]]``.

    Raises:
        ValueError: ``max_batch`` < 1.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_length.setdefault(int(n), []).append(i)
    return [idx[i : i + max_batch] for idx in by_length.values() for i in range(0, len(idx), max_batch)]


class _Runner:
    """Shared input handling: per-window normalisation (as Wav2Vec2FeatureExtractor with
    ``do_normalize``), conversion to the model's device and dtype, inference mode."""

    task = ""

    def __init__(self, pretrained: Pretrained) -> None:
        if pretrained.task != self.task:
            raise ValueError(f"{pretrained.source} is a {pretrained.task!r} model, not {self.task!r}")
        self.pretrained = pretrained
        self.model = pretrained.model
        self.name = _describe(pretrained)
        self.family = pretrained.family  # "WavLM", "Wav2Vec2" (also XLS-R) or "HuBERT"
        self.device = pretrained.device
        self.dtype = pretrained.dtype

    max_batch = MAX_BATCH
    """Most windows per forward pass in the ``*_batch`` methods (1 disables batching)."""

    def _input(self, audio: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """One window ``[N]`` or equal-length windows -> model input ``[B, N]`` (each row
        normalised on its own when the checkpoint asks for it)."""
        if isinstance(audio, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).reshape(1, -1)
        else:
            x = torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32).reshape(-1) for a in audio]))
        if self.pretrained.preprocessor.do_normalize:
            x = self.pretrained.preprocessor.normalize(x)
        return x.to(device=self.device, dtype=self.dtype)

    def _batched(self, audios: Sequence[np.ndarray], run: Callable[[torch.Tensor, list[int]], list[T]]) -> list[T]:
        """``run(x [B, N], indices)`` per group of equal-length windows; outputs back in
        the order of ``audios``."""
        out: list[Any] = [None] * len(audios)
        for group in length_groups([a.shape[-1] for a in audios], self.max_batch):
            for i, y in zip(group, run(self._input([audios[i] for i in group]), group)):
                out[i] = y
        return out


class CTCRunner(_Runner):
    """Runs a CTC checkpoint (``WavLMForCTC``, ``Wav2Vec2ForCTC``, ``HubertForCTC``) on one window.

    Attributes:
        decoder: the checkpoint's greedy CTC decoder (:class:`wavlm_live.model.CTCDecoder`).
        blank_id: CTC blank id (the ``[PAD]`` token).
        delimiter_id: id of the word delimiter ``|`` (``None`` if the model cannot emit one:
            character vocabularies such as Chinese, whose words are single characters).
        final_decoder: decoder of final caption segments' logits with a ``describe()``, e.g. a
            :class:`wavlm_live.model.lm.CTCBeamDecoder` with the checkpoint's language
            model; ``None`` (the default) keeps greedy decoding.
    """

    task = "ctc"

    def __init__(self, pretrained: Pretrained) -> None:
        super().__init__(pretrained)
        if pretrained.decoder is None or pretrained.vocab is None:
            raise ValueError(f"{pretrained.source} has no CTC vocabulary (vocab.json)")
        self.decoder = pretrained.decoder
        vocab = pretrained.vocab
        self.blank_id = vocab.blank_id
        delimiter = vocab.word_delimiter_token
        self.delimiter_id = vocab.tokens.index(delimiter) if delimiter in vocab.tokens else None
        if self.delimiter_id is not None and self.delimiter_id >= (pretrained.config.vocab_size or 0):
            self.delimiter_id = None  # appended by the tokenizer rules past the head (character vocabularies)
        self.final_decoder: Any = None
        self.vocab_size = int(pretrained.config.vocab_size)
        """Classes of the CTC head (the logits' last dimension)."""

    @property
    def decoding(self) -> str:
        """How final captions are decoded, in one line: ``"greedy"``, or the final
        decoder's ``describe()`` (the beam search with its LM)."""
        return "greedy" if self.final_decoder is None else self.final_decoder.describe()

    @torch.inference_mode()
    def logits(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` float32 ``[samples]`` at 16 kHz -> float32 logits ``[frames, vocab]``."""
        out = self.model(self._input(audio))
        return out.logits[0].float().cpu().numpy()

    @torch.inference_mode()
    def logits_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`logits` of several windows (any lengths), batched by length."""
        return self._batched(audios, lambda x, _: list(self.model(x).logits.float().cpu().numpy()))


class FrameRunner(_Runner):
    """Runs a ``*ForAudioFrameClassification`` (diarization) checkpoint on one window."""

    task = "frames"

    def __init__(self, pretrained: Pretrained) -> None:
        super().__init__(pretrained)
        self.num_labels = int(pretrained.config.num_labels)
        """Local speakers of the head (the activity's last dimension)."""

    @torch.inference_mode()
    def activity(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` float32 ``[samples]`` -> sigmoid activity ``[frames, num_labels]`` in [0, 1]."""
        out = self.model(self._input(audio))
        return torch.sigmoid(out.logits[0].float()).cpu().numpy()

    @torch.inference_mode()
    def activity_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`activity` of several windows (any lengths), batched by length."""
        return self._batched(audios, lambda x, _: list(torch.sigmoid(self.model(x).logits.float()).cpu().numpy()))


class XVectorRunner(_Runner):
    """Runs a ``*ForXVector`` checkpoint: whole-input x-vectors, or one x-vector per
    frame mask from a single backbone pass (masked statistics pooling, as pyannote's
    speaker-embedding inference weights frames by each speaker's activity)."""

    task = "xvector"

    def __init__(self, pretrained: Pretrained) -> None:
        super().__init__(pretrained)
        model: Any = self.model
        self.min_frames = int(model.min_frames)
        # TDNN output frame t sees backbone frames [t, t + span]; its mask is the centre's.
        self._span = int(model.frame_span)
        self.dim = int(model.config.xvector_output_dim)

    @torch.inference_mode()
    def embed(self, audio: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """x-vectors of ``audio`` (float32 ``[samples]``, 16 kHz).

        Args:
            audio: the window.
            masks: optional bool ``[n, frames]`` (``frames`` = WavLM frames of ``audio``):
                one x-vector per mask, pooled over the frames it selects.

        Returns:
            float32 ``[n, dim]`` (``[1, dim]`` without masks).

        Raises:
            ValueError: audio shorter than the model's minimum (``min_frames`` frames), or
                masks of the wrong shape / selecting fewer than 2 frames.
        """
        return self.embed_batch([audio], [masks])[0]

    @torch.inference_mode()
    def embed_batch(self, audios: Sequence[np.ndarray],
                    masks: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """:meth:`embed` of several windows (any lengths, each with its own masks or
        ``None``), one backbone pass per group of equal-length windows.

        Raises:
            ValueError: as :meth:`embed`, for any window.
        """
        model: Any = self.model
        masks = [None] * len(audios) if masks is None else list(masks)
        if len(masks) != len(audios):
            raise ValueError(f"got {len(masks)} mask sets for {len(audios)} windows")
        for a in audios:
            frames = model.config.frames_for_samples(a.shape[-1]) if a.shape[-1] >= 400 else 0
            if frames < self.min_frames:
                raise ValueError(f"a window of {a.shape[-1]} samples ({frames} frames) is too short for the "
                                 f"x-vector model (at least {self.min_frames} frames)")

        def run(x: torch.Tensor, group: list[int]) -> list[np.ndarray]:
            h = model.frame_features(x)[0]  # [B, T', C] float32
            out = []
            for row, i in enumerate(group):
                if masks[i] is None:
                    weights = torch.ones(1, h.shape[1], device=h.device)
                else:
                    weights = self._weights(masks[i], h.shape[1]).to(h.device)
                out.append(model.masked_embeddings(h[row : row + 1], weights).float().cpu().numpy())
            return out

        return self._batched(audios, run)

    def _weights(self, masks: np.ndarray, tdnn_frames: int) -> torch.Tensor:
        """Backbone-frame masks ``[n, frames]`` -> pooling weights ``[n, T']`` over TDNN frames
        (each TDNN frame takes the mask of its centre frame)."""
        n_frames = tdnn_frames + self._span
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != n_frames:
            raise ValueError(f"expected masks of shape [n, {n_frames}], got {masks.shape}")
        centre = self._span // 2
        m = torch.from_numpy(masks[:, centre : centre + tdnn_frames].astype(np.float32))  # [n, T']
        if bool((m.sum(dim=1) < 2).any()):
            raise ValueError("every mask must select at least 2 frames after the TDNN")
        return m


KEYWORD_MARKERS = ("_silence_", "_unknown_")
"""Classes that mark a keyword-spotting label set (Speech Commands, as in SUPERB KS)."""


class SequenceRunner(_Runner):
    """Runs a ``*ForSequenceClassification`` checkpoint on whole clips.

    Attributes:
        labels: class names by class id (the checkpoint's ``id2label``).
        keyword_spotting: the label set is a keyword-spotting one (:data:`KEYWORD_MARKERS`).
    """

    task = "sequence"

    def __init__(self, pretrained: Any) -> None:
        super().__init__(pretrained)
        self.labels = list(pretrained.config.id2label)
        self.keyword_spotting = any(marker in self.labels for marker in KEYWORD_MARKERS)

    @torch.inference_mode()
    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` float32 ``[samples]`` at 16 kHz -> softmax probabilities ``[classes]``."""
        return self.probabilities_batch([audio])[0]

    @torch.inference_mode()
    def probabilities_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`probabilities` of several clips (any lengths), batched by length."""
        return self._batched(audios, lambda x, _: list(torch.softmax(self.model(x).logits.float(), -1).cpu().numpy()))
