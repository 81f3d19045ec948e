"""The three task models: CTC, audio frame classification and x-vector, for every family.

Each is ``nn.Module(config)`` holding the backbone under the family's name
(``config.model_type``: ``wavlm``, ``wav2vec2`` or ``hubert``; also reachable as
``backbone``) plus its head, with the attribute names (and so the state-dict keys) of
transformers 5.24's ``WavLMForCTC`` / ``Wav2Vec2ForCTC`` / ``HubertForCTC``,
``*ForAudioFrameClassification`` and ``*ForXVector`` (the heads are the same code in all
three families there). The class names are WavLM's; a Wav2Vec2 config gives a Wav2Vec2
model. Every ``forward`` is ``(input_values [B, N], attention_mask [B, N] | None,
output_hidden_states=False) -> WavLMOutput``. Training-only parts (dropout, losses, the
AM-softmax ``objective``) are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import WavLMModel, WavLMOutput
from .config import WavLMConfig


class _TaskModel(nn.Module):
    """Backbone plus the optional ``layer_weights`` of the weighted layer sum."""

    def __init__(self, config: WavLMConfig, weighted_sum: bool):
        super().__init__()
        self.config = config
        setattr(self, config.model_type, WavLMModel(config))  # "wavlm." / "wav2vec2." / "hubert." keys
        self.weighted_sum = weighted_sum and config.use_weighted_layer_sum
        if self.weighted_sum:
            n = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(n) / n)

    @property
    def backbone(self) -> WavLMModel:
        """The backbone, whatever the family (the module named ``config.model_type``)."""
        return getattr(self, self.config.model_type)

    def _features(self, input_values: Tensor, attention_mask: Tensor | None,
                  output_hidden_states: bool) -> tuple[Tensor, WavLMOutput]:
        """Run the backbone; returns the head input ``[B, T, H]`` (softmax(layer_weights)
        weighted sum of all hidden states, or the last hidden state) and the backbone output."""
        out = self.backbone(input_values, attention_mask, output_hidden_states or self.weighted_sum)
        if not self.weighted_sum:
            return out.last_hidden_state, out
        weights = torch.softmax(self.layer_weights.float(), dim=-1)  # summed in float32 under bf16/fp16
        features = sum(w * h.float() for w, h in zip(weights, out.hidden_states)).to(out.last_hidden_state.dtype)
        if not output_hidden_states:
            out.hidden_states = None
        return features, out


class WavLMForCTC(_TaskModel):
    """WavLM with a CTC head: ``lm_head`` Linear(H -> vocab_size) per frame; blank is
    ``config.pad_token_id``. ``logits``: ``[B, T, vocab_size]``.

    Raises ``ValueError`` if ``config.vocab_size`` is null.
    """

    def __init__(self, config: WavLMConfig):
        if config.vocab_size is None:
            raise ValueError("config field 'vocab_size' is null; a CTC head needs it")
        super().__init__(config, weighted_sum=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False) -> WavLMOutput:
        h, out = self._features(input_values, attention_mask, output_hidden_states)
        out.logits = self.lm_head(h)
        return out


class WavLMForAudioFrameClassification(_TaskModel):
    """WavLM with a per-frame classifier (diarization: speaker activity, sigmoid of the
    logits): ``classifier`` Linear(H -> num_labels). ``logits``: ``[B, T, num_labels]``."""

    def __init__(self, config: WavLMConfig):
        super().__init__(config, weighted_sum=True)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False) -> WavLMOutput:
        h, out = self._features(input_values, attention_mask, output_hidden_states)
        out.logits = self.classifier(h)
        return out


class TDNNLayer(nn.Module):
    """Dilated conv over frames, no padding, then ReLU; weight stored as ``kernel``
    Linear(kernel * C_in -> C_out) as in transformers' ``TDNNLayer``.
    Shape: ``[B, T, C_in] -> [B, T - (kernel - 1) * dilation, C_out]``."""

    def __init__(self, config: WavLMConfig, layer_id: int):
        super().__init__()
        self.in_dim = config.tdnn_dim[layer_id - 1] if layer_id > 0 else config.tdnn_dim[0]
        self.out_dim = config.tdnn_dim[layer_id]
        self.kernel_size = config.tdnn_kernel[layer_id]
        self.dilation = config.tdnn_dilation[layer_id]
        self.kernel = nn.Linear(self.in_dim * self.kernel_size, self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.kernel.weight.view(self.out_dim, self.kernel_size, self.in_dim).transpose(1, 2)
        x = F.conv1d(x.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return F.relu(x.transpose(1, 2))


class WavLMForXVector(_TaskModel):
    """WavLM with the x-vector head: ``projector`` Linear(H -> tdnn_dim[0]), TDNN layers,
    statistics pooling (mean and unbiased std over frames, in float32),
    ``feature_extractor`` Linear(2 * tdnn_dim[-1] -> D) giving ``embeddings [B, D]``, and
    ``classifier`` Linear(D -> D) giving transformers' ``logits [B, D]``
    (D = ``xvector_output_dim``). Compare embeddings by cosine similarity.

    Needs at least ``min_frames`` frames (16 with the default TDNN: 5200 samples); raises
    ``ValueError`` for fewer.
    """

    def __init__(self, config: WavLMConfig):
        super().__init__(config, weighted_sum=True)
        self.projector = nn.Linear(config.hidden_size, config.tdnn_dim[0])
        self.tdnn = nn.ModuleList(TDNNLayer(config, i) for i in range(len(config.tdnn_dim)))
        self.feature_extractor = nn.Linear(config.tdnn_dim[-1] * 2, config.xvector_output_dim)
        self.classifier = nn.Linear(config.xvector_output_dim, config.xvector_output_dim)

    @property
    def frame_span(self) -> int:
        """Backbone frames one TDNN output frame sees beyond its first: ``sum((kernel - 1) *
        dilation)`` (14 with the default TDNN). TDNN frame ``t`` covers backbone frames
        ``[t, t + frame_span]``."""
        c = self.config
        return sum((k - 1) * d for k, d in zip(c.tdnn_kernel, c.tdnn_dilation))

    @property
    def min_frames(self) -> int:
        """Fewest backbone frames accepted: ``2 + sum((kernel - 1) * dilation)`` (16 with the
        default TDNN, 5200 samples), so that at least two TDNN frames are pooled; with one,
        the unbiased std (and so the embedding) is NaN, which transformers returns silently."""
        return 2 + self.frame_span

    def pooling_lengths(self, frame_lengths: Tensor) -> Tensor:
        """TDNN frames pooled per utterance when an attention mask is given: transformers'
        ``_get_tdnn_output_lengths``, ``frames - sum(kernel - 1)``, which ignores dilation
        (so with padding it pools a few frames whose receptive field reaches into the
        padding, and with none it would pool past the end: pooling is clipped to the TDNN
        output there). ``[B]`` int64 -> ``[B]`` int64."""
        return frame_lengths - sum(k - 1 for k in self.config.tdnn_kernel)

    def frame_features(self, input_values: Tensor, attention_mask: Tensor | None = None,
                       output_hidden_states: bool = False) -> tuple[Tensor, WavLMOutput]:
        """The per-frame features that statistics pooling averages: backbone (or weighted layer
        sum), ``projector``, TDNN layers. Returns float32 ``[B, T - frame_span, tdnn_dim[-1]]``
        (TDNN frame ``t`` sees backbone frames ``[t, t + frame_span]``) and the backbone output.
        Callers that pool over their own frame masks (the streaming engine's per-speaker
        x-vectors) use this and :meth:`embed_statistics`."""
        h, out = self._features(input_values, attention_mask, output_hidden_states)
        h = self.projector(h)
        for layer in self.tdnn:
            h = layer(h)
        return h.float(), out

    def embed_statistics(self, mean: Tensor, std: Tensor) -> Tensor:
        """x-vectors from pooled statistics: ``feature_extractor([mean, std])``.
        mean, std: float32 ``[B, tdnn_dim[-1]]`` -> embeddings ``[B, xvector_output_dim]``
        in the model's dtype."""
        pooled = torch.cat([mean, std], dim=-1).to(self.feature_extractor.weight.dtype)
        return self.feature_extractor(pooled)

    def masked_embeddings(self, h: Tensor, weights: Tensor, eps: float = 0.0) -> Tensor:
        """x-vectors pooled over selected frames: the weighted mean and unbiased std of ``h``
        under each row of ``weights``, then :meth:`embed_statistics`. All x-vector pooling
        goes through here: :meth:`forward` (whole utterances), the streaming engine's
        per-speaker x-vectors and the demo embeddings training.

        Args:
            h: float32 ``[N, T', C]`` or ``[1, T', C]`` (shared by every row of ``weights``),
                from :meth:`frame_features`.
            weights: float32 ``[N, T']``, 1 for a pooled TDNN frame, 0 otherwise.
            eps: added to the variance before the square root (training passes 1e-6 so
                that the gradient stays finite; 0 keeps all-ones weights equal to
                :meth:`forward`'s pooling).

        Returns:
            embeddings ``[N, xvector_output_dim]`` in the model's dtype. A row is counted
            as at least 2 frames; callers that need 2 real frames check ``weights.sum(1)``.
        """
        counts = weights.sum(dim=1, keepdim=True).clamp(min=2)
        mean = torch.einsum("nt,ntc->nc", weights, h.expand(len(weights), -1, -1)) / counts
        var = torch.einsum("nt,ntc->nc", weights, (h - mean[:, None]).square()) / (counts - 1)
        return self.embed_statistics(mean, (var + eps).sqrt())

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False) -> WavLMOutput:
        n_frames = self.config.frames_for_samples(input_values.shape[-1]) if input_values.dim() == 2 else 0
        if input_values.dim() == 2 and n_frames < self.min_frames:
            raise ValueError(f"input_values has {input_values.shape[-1]} samples ({n_frames} frames); the x-vector "
                             f"head needs at least {self.min_frames} frames")
        h, out = self.frame_features(input_values, attention_mask, output_hidden_states)
        if attention_mask is None:
            weights = torch.ones(h.shape[:2], device=h.device)
        else:
            frames = self.backbone.frame_lengths(attention_mask)
            if bool((frames < self.min_frames).any()):
                raise ValueError(f"attention_mask has an utterance of {int(frames.min())} frames; the x-vector "
                                 f"head needs at least {self.min_frames}")
            pooled = torch.arange(h.shape[1], device=h.device)[None] < self.pooling_lengths(frames)[:, None]
            weights = pooled.float()
        out.embeddings = self.masked_embeddings(h, weights)
        out.logits = self.classifier(out.embeddings)
        return out


class WavLMForSequenceClassification(_TaskModel):
    """WavLM (or Wav2Vec2 / HuBERT) with an utterance classifier, as transformers'
    ``*ForSequenceClassification``: the head input (weighted layer sum or last hidden
    state) through ``projector`` Linear(H -> classifier_proj_size), mean pooling over the
    valid frames, then ``classifier`` Linear(classifier_proj_size -> num_labels).
    ``logits``: ``[B, num_labels]``; the class names are ``config.id2label``.

    Keyword spotting (superb/wav2vec2-base-superb-ks), emotion recognition
    (superb/hubert-large-superb-er) and language identification use this layout.
    """

    def __init__(self, config: WavLMConfig):
        super().__init__(config, weighted_sum=True)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False) -> WavLMOutput:
        h, out = self._features(input_values, attention_mask, output_hidden_states)
        h = self.projector(h)  # [B, T, P]
        if attention_mask is None:
            pooled = h.mean(dim=1)
        else:
            valid = ~self.backbone.frame_padding(attention_mask, h.shape[1])  # [B, T]
            h = h.masked_fill(~valid[..., None], 0.0)
            pooled = h.sum(dim=1) / valid.sum(dim=1, keepdim=True).to(h.dtype)
        out.logits = self.classifier(pooled)
        return out
