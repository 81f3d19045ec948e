"""Task-model runners: numpy audio windows in, numpy per-window outputs out (torch inside)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wavlm_live.model import Pretrained


def _describe(pretrained: Pretrained) -> str:
    """The model as the hello names it: its source and family, "owner/name (Wav2Vec2)"."""
    return f"{pretrained.source} ({pretrained.family})"


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

    def _input(self, audio: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).reshape(1, -1)
        if self.pretrained.preprocessor.do_normalize:
            x = self.pretrained.preprocessor.normalize(x)
        return x.to(device=self.device, dtype=self.dtype)


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


class FrameRunner(_Runner):
    """Runs a ``*ForAudioFrameClassification`` (diarization) checkpoint on one window."""

    task = "frames"

    @torch.inference_mode()
    def activity(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` float32 ``[samples]`` -> sigmoid activity ``[frames, num_labels]`` in [0, 1]."""
        out = self.model(self._input(audio))
        return torch.sigmoid(out.logits[0].float()).cpu().numpy()


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
        model: Any = self.model
        x = self._input(audio)
        if masks is None:
            return model(x).embeddings.float().cpu().numpy()
        h = model.frame_features(x)[0]  # [1, T', C] float32
        n_frames = h.shape[1] + self._span
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != n_frames:
            raise ValueError(f"expected masks of shape [n, {n_frames}], got {masks.shape}")
        centre = self._span // 2
        m = torch.from_numpy(masks[:, centre : centre + h.shape[1]].astype(np.float32)).to(h.device)  # [n, T']
        if bool((m.sum(dim=1) < 2).any()):
            raise ValueError("every mask must select at least 2 frames after the TDNN")
        return model.masked_embeddings(h, m).float().cpu().numpy()
