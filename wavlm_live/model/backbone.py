"""The backbone of WavLM, Wav2Vec2 (XLS-R) and HuBERT: conv feature encoder, feature
projection, weight-normed positional conv (folded into a plain weight), and the transformer
encoder (post-LN or stable-LN).

Architecture and numbers follow transformers 5.24 ``modeling_wavlm.py``,
``modeling_wav2vec2.py`` and ``modeling_hubert.py``, which differ only in the attention
(WavLM's gated relative position bias vs plain attention, ``config.relative_position_bias``)
and HuBERT's optional feature-projection LayerNorm (``feat_proj_layer_norm``). Module and
parameter names match their state-dict keys so checkpoints load by name. Layout is
``[batch, frames, hidden]`` everywhere outside the conv stack (which is channel-major,
``[batch, channels, samples]``, as in transformers).

These are the reference forwards: ``nn.Conv1d``, ``GroupNorm`` / ``LayerNorm``, the
activation, ``nn.Linear`` and the residual adds, the same on every device and in every
dtype. The CPU fast path (oneDNN fused matmuls and convolutions, a time-major conv stack,
the first conv layer folded with its GroupNorm) replaces some of these forwards when
:func:`wavlm_live.model.fast.accelerate` is called (``load_pretrained`` does on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SelfAttention, WavLMAttention
from .config import WavLMConfig


def activation(name: str):
    """The activation function for a config name ("gelu" is the exact erf GELU, as
    transformers' ``ACT2FN``). Raises ``ValueError`` for an unknown name."""
    if name == "gelu":
        return F.gelu
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise ValueError(f"unknown activation {name!r}")


@dataclass
class WavLMOutput:
    """Output of every model in this package.

    last_hidden_state: ``[B, T, H]`` final encoder output (after the final LayerNorm for
        stable-LN models).
    logits: CTC ``[B, T, vocab_size]``; frame classification ``[B, T, num_labels]``;
        x-vector: transformers' speaker-classifier output ``[B, xvector_output_dim]``; else None.
    embeddings: x-vector speaker embeddings ``[B, xvector_output_dim]``, else None.
    hidden_states: when asked for, ``num_hidden_layers + 1`` tensors ``[B, T, H]``: the input
        of layer 0 then the output of each layer (for stable-LN models the last one is before
        the final LayerNorm), as transformers 5 returns them; else None.
    """

    last_hidden_state: Tensor
    logits: Tensor | None = None
    embeddings: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None


class ConvLayer(nn.Module):
    """One feature-encoder layer, as transformers' ``Wav2Vec2NoLayerNormConvLayer`` /
    ``Wav2Vec2GroupNormConvLayer`` / ``Wav2Vec2LayerNormConvLayer``: Conv1d, optional norm
    ("group": GroupNorm with one group per channel over time, eps 1e-5; "layer": LayerNorm
    over channels, eps 1e-5), activation. Shape: ``[B, C_in, N] -> [B, C_out, N']``."""

    def __init__(self, config: WavLMConfig, layer_id: int, norm: str | None):
        super().__init__()
        c_in = config.conv_dim[layer_id - 1] if layer_id > 0 else 1
        c_out = config.conv_dim[layer_id]
        self.conv = nn.Conv1d(c_in, c_out, config.conv_kernel[layer_id], stride=config.conv_stride[layer_id],
                              bias=config.conv_bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out, elementwise_affine=True)
        self.act = activation(config.feat_extract_activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.act(x)


class FeatureEncoder(nn.Module):
    """Conv stack from samples to frames, as transformers' ``Wav2Vec2FeatureEncoder``, then
    transposed to time-major. Shape: ``[B, N] samples -> [B, T, C] frames`` (the layout the
    feature projection takes). The input is cast to the dtype of the conv weights.

    With ``feat_extract_norm="group"`` only the first layer has a GroupNorm (one group per
    channel, over the whole window, padding included); with ``"layer"`` every layer has a
    LayerNorm.
    """

    def __init__(self, config: WavLMConfig):
        super().__init__()
        n = len(config.conv_dim)
        if config.feat_extract_norm == "group":
            norms = ["group"] + [None] * (n - 1)
        else:
            norms = ["layer"] * n
        self.conv_layers = nn.ModuleList(ConvLayer(config, i, norm) for i, norm in enumerate(norms))

    def forward(self, input_values: Tensor) -> Tensor:
        x = input_values[:, None].to(self.conv_layers[0].conv.weight.dtype)  # [B, 1, N]
        for layer in self.conv_layers:
            x = layer(x)
        return x.transpose(1, 2)


class FeatureProjection(nn.Module):
    """LayerNorm (absent for HuBERT with ``feat_proj_layer_norm`` false) then Linear from conv
    channels to the hidden size. Shape: ``[B, T, C] -> [B, T, H]``."""

    def __init__(self, config: WavLMConfig):
        super().__init__()
        if config.feat_proj_layer_norm:
            self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConvEmbedding(nn.Module):
    """Grouped Conv1d over frames (kernel ``num_conv_pos_embeddings``, "same" padding, last
    frame dropped for an even kernel), then the activation, as transformers'
    ``Wav2Vec2PositionalConvEmbedding``. Checkpoints store the weight as
    weight-norm factors (g, v); the loader folds them into ``conv.weight``.
    Shape: ``[B, T, H] -> [B, T, H]``."""

    def __init__(self, config: WavLMConfig):
        super().__init__()
        k = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel_size=k, padding=k // 2,
                              groups=config.num_conv_pos_embedding_groups)
        self.remove = 1 if k % 2 == 0 else 0
        self.act = activation(config.feat_extract_activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x.transpose(1, 2))
        if self.remove:
            x = x[:, :, : -self.remove]
        return self.act(x).transpose(1, 2)


class FeedForward(nn.Module):
    """``output_dense(act(intermediate_dense(x)))``, as transformers' ``Wav2Vec2FeedForward``
    (dropout left out). Shape: ``[B, T, H] -> [B, T, H]``."""

    def __init__(self, config: WavLMConfig):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(self.act(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """One transformer layer, as transformers' ``WavLMEncoderLayer`` /
    ``WavLMEncoderLayerStableLayerNorm`` (and Wav2Vec2's). Post-LN (``stable=False``):
    ``h = LN(h + Attn(h)); h = LN'(h + FFN(h))``. Stable-LN: ``h += Attn(LN(h));
    h += FFN(LN'(h))``. Shape: ``[B, T, H] -> [B, T, H]``."""

    def __init__(self, config: WavLMConfig, has_relative_position_bias: bool):
        super().__init__()
        self.stable = config.do_stable_layer_norm
        if config.relative_position_bias:
            self.attention = WavLMAttention(config.hidden_size, config.num_attention_heads, config.num_buckets,
                                            config.max_bucket_distance, has_relative_position_bias)
        else:
            self.attention = SelfAttention(config.hidden_size, config.num_attention_heads)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: Tensor, position_bias: Tensor | None, key_padding: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.stable:
            attended, position_bias = self.attention(self.layer_norm(h), position_bias, key_padding)
            h = h + attended
            h = h + self.feed_forward(self.final_layer_norm(h))
        else:
            attended, position_bias = self.attention(h, position_bias, key_padding)
            h = self.layer_norm(h + attended)
            h = self.final_layer_norm(h + self.feed_forward(h))
        return h, position_bias


class Encoder(nn.Module):
    """Positional conv, transformer layers and the encoder LayerNorm (before the layers for
    post-LN, after them for stable-LN). Shape: ``[B, T, H] -> [B, T, H]``."""

    def __init__(self, config: WavLMConfig):
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config, i == 0) for i in range(config.num_hidden_layers))

    def forward(self, h: Tensor, key_padding: Tensor | None = None,
                output_hidden_states: bool = False) -> tuple[Tensor, list[Tensor] | None]:
        """Returns ``(last_hidden_state, hidden_states or None)``; padded frames
        (``key_padding`` True) are zeroed before the positional conv, as in transformers."""
        if key_padding is not None:
            h = h.masked_fill(key_padding[..., None], 0.0)
        h = h + self.pos_conv_embed(h)
        if not self.stable:
            h = self.layer_norm(h)
        hidden = [h] if output_hidden_states else None
        bias = None
        for layer in self.layers:
            h, bias = layer(h, bias, key_padding)
            if hidden is not None:
                hidden.append(h)
        if self.stable:
            h = self.layer_norm(h)
        return h, hidden


class WavLMModel(nn.Module):
    """The backbone (WavLM, Wav2Vec2 / XLS-R or HuBERT, after ``config.model_type``):
    samples at 16 kHz to contextual frame features.

    ``forward(input_values [B, N] float, attention_mask [B, N] (1 = sample, 0 = padding) or
    None, output_hidden_states=False) -> WavLMOutput`` with ``last_hidden_state [B, T, H]``,
    ``T = config.frames_for_samples(N)`` (``floor((N - 400) / 320) + 1`` for the standard
    stack; frames 20 ms apart). Inputs are expected already normalised when the
    checkpoint's preprocessor says so (``PreprocessorConfig.normalize``).

    Raises ``ValueError`` for a wrong input shape or fewer samples than one frame needs.
    """

    def __init__(self, config: WavLMConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    def frame_padding(self, attention_mask: Tensor, n_frames: int) -> Tensor:
        """Padded-frame mask ``[B, T]`` (True = padding) from a sample mask ``[B, N]``: frame
        lengths follow the conv output-length chain of the valid sample counts, as transformers'
        ``_get_feature_vector_attention_mask``. Raises ``ValueError`` when an utterance has
        fewer valid samples than one frame needs."""
        lengths = self.frame_lengths(attention_mask)
        return torch.arange(n_frames, device=lengths.device)[None, :] >= lengths[:, None]

    def frame_lengths(self, attention_mask: Tensor) -> Tensor:
        """Valid frames per utterance ``[B]`` (int64) for a sample mask ``[B, N]``."""
        lengths = attention_mask.long().sum(-1)
        if bool((lengths < self.config.receptive_field).any()):
            raise ValueError(f"attention_mask has an utterance with {int(lengths.min())} valid samples; "
                             f"each needs at least {self.config.receptive_field}")
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
        return lengths

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False) -> WavLMOutput:
        if not isinstance(input_values, Tensor) or input_values.dim() != 2:
            shape = tuple(input_values.shape) if isinstance(input_values, Tensor) else type(input_values).__name__
            raise ValueError(f"input_values must be a [batch, samples] tensor, got {shape}")
        if input_values.shape[1] < self.config.receptive_field:
            raise ValueError(f"input_values has {input_values.shape[1]} samples; the model needs at least "
                             f"{self.config.receptive_field}")
        if attention_mask is not None and attention_mask.shape != input_values.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} differs from input_values "
                             f"shape {tuple(input_values.shape)}")
        x = self.feature_extractor(input_values)  # [B, T, C]
        key_padding = None if attention_mask is None else self.frame_padding(attention_mask, x.shape[1])
        h = self.feature_projection(x)
        h, hidden = self.encoder(h, key_padding, output_hidden_states)
        return WavLMOutput(last_hidden_state=h, hidden_states=tuple(hidden) if hidden is not None else None)
