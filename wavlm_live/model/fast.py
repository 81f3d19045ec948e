"""The CPU fast path: ``accelerate(model)`` swaps the backbone's modules for versions that
run on oneDNN's fused kernels (``kernels.py``). The modules in ``backbone.py`` and
``attention.py`` are reference PyTorch; everything device- or dtype-specific is here.

:func:`~wavlm_live.model.load_pretrained` calls :func:`accelerate` when the model runs on
the CPU in float32 or bfloat16 (``fast=False`` gives the reference model). What changes,
per module (same parameters, same call signatures, same output shapes and dtypes):

- ``FeatureEncoder``: time-major conv stack (``[B, T, C]`` throughout, no transposes); the
  first layer with ``feat_extract_norm="group"`` is one matrix product with the GroupNorm
  folded in and its statistics taken in float64 from the input windows (for one utterance
  with the GELU fused), with ``"layer"`` it runs in float32; the later convolutions are
  oneDNN matmuls with the GELU fused (``kernels.conv1d_time_major``).
- ``FeatureProjection``, ``FeedForward``: oneDNN matmuls with the GELU or the residual add
  fused (``kernels.linear``); bfloat16 weights pre-packed.
- ``PositionalConvEmbedding``: oneDNN convolution with the GELU fused (``kernels.conv1d_gelu``,
  which also works around oneDNN's wrong grouped bfloat16 convolutions of small shapes).
- ``EncoderLayer``: hands the residual to attention and feed-forward to be fused.
- ``WavLMAttention`` / ``SelfAttention``: q, k, v (and WavLM's gate) as one cached stacked
  matmul; WavLM's bfloat16 attention with float32 scores (:func:`_attention_fp32_scores`);
  ``out_proj`` with the residual add fused.

Under autograd (parameters that need gradients, grad mode on) each fast module computes
what the reference does (plain ``F.linear`` / ``F.conv1d``), and every kernel falls back to
plain PyTorch off the CPU or in float16, so an accelerated model stays correct when moved
to another device or trained; it is only faster on the CPU. Results equal the reference
forwards up to float rounding (float32: within 1e-4 of transformers, like the reference;
bfloat16: about as close to float32 as the reference, see docs/models.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SelfAttention, WavLMAttention
from .backbone import ConvLayer, EncoderLayer, FeatureEncoder, FeatureProjection, FeedForward, PositionalConvEmbedding
from .kernels import cached, conv1d_gelu, conv1d_time_major, linear, matmul, pack

EXPLICIT_BF16_ATTENTION = True
"""Use :func:`_attention_fp32_scores` for WavLM's bfloat16 CPU inference in
:class:`FastWavLMAttention`; a switch for benchmarks (``kernels.PACK_BF16_WEIGHTS`` is the other)."""


def _needs_grad(*modules: nn.Module) -> bool:
    """Whether autograd records through any parameter of ``modules`` (then the fast modules
    run the reference computation: no cached derived weights, no fused kernels)."""
    return torch.is_grad_enabled() and any(p.requires_grad for m in modules for p in m.parameters())


# --- feature encoder ---------------------------------------------------------------------

class FastFeatureEncoder(FeatureEncoder):
    """:class:`~wavlm_live.model.backbone.FeatureEncoder` time-major from the first layer on.

    Layers run in the dtype of their weights (any float input is accepted). With
    ``feat_extract_norm="group"`` the first layer is one matrix product: GroupNorm (one group
    per channel, over the whole window, padding included) is folded into the conv, its
    per-channel mean and variance taken in closed form, in float64, from the mean and
    covariance of the input windows (``var_c = w_c^T Cov w_c``), so the statistics keep full
    precision under bf16/fp16 and PyTorch's slow single-input-channel convolution and the
    separate norm pass are avoided. With ``"layer"`` the first layer runs in float32 (it is
    cheap) and its output is cast. Shape: ``[B, N] -> [B, T, C]``."""

    def forward(self, input_values: Tensor) -> Tensor:
        first = self.conv_layers[0]
        dtype = self.conv_layers[-1].conv.weight.dtype
        x = input_values.float()
        with torch.autocast(x.device.type, enabled=False):
            if first.norm == "group":
                x = _group_norm_first_layer(first, x, dtype)
            else:
                x = _float32_forward(first, x[:, None]).to(dtype)
        for layer in self.conv_layers[1:]:
            x = _conv_layer_time_major(layer, x)
        return x


def _conv_layer_time_major(layer: ConvLayer, x: Tensor) -> Tensor:
    """A feature-encoder layer after the first (no GroupNorm) on time-major frames:
    ``[B, N, C_in] -> [B, N', C_out]`` (``kernels.conv1d_time_major``, GELU fused)."""
    if layer.norm is None and layer.act is F.gelu:
        return conv1d_time_major(x, layer.conv, "gelu")
    x = conv1d_time_major(x, layer.conv)
    if layer.norm == "layer":
        x = layer.layer_norm(x)
    return layer.act(x)


def _group_norm_first_layer(layer: ConvLayer, x: Tensor, dtype: torch.dtype) -> Tensor:
    """Conv1d(1 -> C, kernel k, stride s) + GroupNorm(C groups) + activation as one batched
    matrix product in ``dtype`` (for one utterance with the GELU fused where ``kernels.matmul``
    can), with float64 statistics. Shape: ``[B, N] float32 -> [B, T, C]``."""
    conv, norm = layer.conv, layer.layer_norm
    k, s = conv.kernel_size[0], conv.stride[0]
    b, n = x.shape
    t = (n - k) // s + 1
    x = x.contiguous()
    windows = x.as_strided((b, t, k), (x.stride(0), s, 1))  # [B, T, k], overlapping views
    w = conv.weight.float()[:, 0, :]  # [C, k]; the conv bias cancels in the normalisation
    # window statistics in float64: sums over up to ~10^5 frames keep GroupNorm's precision
    w64 = w.double()
    windows64 = windows.double()
    mean_win = windows64.mean(dim=1)
    centred = windows64 - mean_win[:, None, :]
    cov = centred.transpose(1, 2) @ centred / t
    var = ((w64 @ cov) * w64).sum(-1)  # [B, C]: variance over time of each channel's conv output
    scale = norm.weight.double() * torch.rsqrt(var + norm.eps)  # [B, C]
    shift = (norm.bias.double() - (mean_win @ w64.t()) * scale).float().to(dtype)
    weights = (w * scale.float()[:, :, None]).to(dtype)  # [B, C, k]
    windows = windows.to(dtype)
    if b == 1 and layer.act is F.gelu:  # one utterance (streaming): the GELU fused into the matmul
        return matmul(windows[0], weights[0], shift[0], "gelu")[None]
    return layer.act(torch.baddbmm(shift[:, None, :], windows, weights.transpose(1, 2)))


def _float32_forward(layer: ConvLayer, x: Tensor) -> Tensor:
    """The layer-norm first layer with float32 copies of its (small) parameters.
    Shape: ``[B, 1, N] -> [B, T, C]``."""
    conv, ln = layer.conv, layer.layer_norm
    bias = conv.bias.float() if conv.bias is not None else None
    x = F.conv1d(x, conv.weight.float(), bias, stride=conv.stride).transpose(1, 2)
    x = F.layer_norm(x, ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps)
    return layer.act(x)


class FastFeatureProjection(FeatureProjection):
    """:class:`~wavlm_live.model.backbone.FeatureProjection` on ``kernels.linear``."""

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
        return linear(x, self.projection)


class FastPositionalConvEmbedding(PositionalConvEmbedding):
    """:class:`~wavlm_live.model.backbone.PositionalConvEmbedding` with the GELU fused into
    oneDNN's convolution (``kernels.conv1d_gelu``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        x = conv1d_gelu(x, self.conv) if self.act is F.gelu else self.act(self.conv(x))
        if self.remove:  # the activation is elementwise: dropping the frame after it is the same
            x = x[:, :, : -self.remove]
        return x.transpose(1, 2)


class FastFeedForward(FeedForward):
    """:class:`~wavlm_live.model.backbone.FeedForward` ``(+ residual)``, the GELU and the
    residual add fused into the matmuls (``kernels.linear``). Shape: ``[B, T, H] -> [B, T, H]``."""

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if self.act is F.gelu:
            h = linear(x, self.intermediate_dense, activation="gelu")
        else:
            h = self.act(linear(x, self.intermediate_dense))
        return linear(h, self.output_dense, residual=residual)


class FastEncoderLayer(EncoderLayer):
    """:class:`~wavlm_live.model.backbone.EncoderLayer` handing each residual to the
    attention's ``out_proj`` and the feed-forward's ``output_dense``, which fuse the add."""

    def forward(self, h: Tensor, position_bias: Tensor | None, key_padding: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.stable:
            h, position_bias = self.attention(self.layer_norm(h), position_bias, key_padding, residual=h)
            h = self.feed_forward(self.final_layer_norm(h), residual=h)
        else:
            h, position_bias = self.attention(h, position_bias, key_padding, residual=h)
            h = self.layer_norm(h)
            h = self.final_layer_norm(self.feed_forward(h, residual=h))
        return h, position_bias


# --- attention ---------------------------------------------------------------------------

def _attention_fp32_scores(q: Tensor, k: Tensor, v: Tensor, gate: Tensor, bias: Tensor,
                           key_padding: Tensor | None) -> Tensor:
    """Attention for bfloat16 on the CPU with float32 scores: q and k are widened to
    float32 for ``q k^T``, the gated bias ``gate * bias`` is added in float32, padded keys
    get ``-inf``, the softmax runs in place in float32, and its probabilities, rounded to
    bfloat16, multiply the bfloat16 values.

    Args:
        q, k, v: ``[B, heads, T, d]`` bfloat16, q already scaled by ``1/sqrt(d)``.
        gate: ``[B, heads, T]`` per-query gate (the layer's dtype; promoted to float32).
        bias: ``[heads, T, T]`` float32 ungated relative position bias.
        key_padding: ``[B, T]`` bool, True for padded keys, or None.

    Returns: ``[B, heads, T, d]`` bfloat16.

    PyTorch's CPU flash-attention kernel gains nothing from bfloat16 at WavLM's window
    lengths (it converts blocks to float32) and takes the bias in bfloat16 (8-bit mantissa).
    This form is ~1.4x faster than the kernel at 200 frames (4 s) and ~1.25x at 400 (8 s)
    on this project's CPU, two threads, and its output's relative RMS error against float64
    attention is ~0.25% against the kernel's ~0.8% (random q, k, v, bias). A bfloat16
    ``q k^T`` would be faster still, but rounding the scores costs an error that grows with
    them (0.9% for scores of std 8, against 0.26% here). The backbone's total bfloat16
    error, ~1.5%, is set by the linears."""
    b, h, t, d = q.shape
    scores = torch.bmm(q.reshape(b * h, t, d).float(), k.reshape(b * h, t, d).float().transpose(1, 2))
    scores = scores.view(b, h, t, t)
    scores.addcmul_(gate.unsqueeze(-1), bias)
    if key_padding is not None:
        scores.masked_fill_(key_padding[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1, out=scores).to(v.dtype)  # in place: half the memory traffic
    return torch.bmm(probs.view(b * h, t, t), v.reshape(b * h, t, d)).view(b, h, t, d)


def _stacked_projection(x: Tensor, layers: tuple[nn.Linear, ...], scale: float, extra=None):
    """One matmul for q (rows and bias scaled by ``scale``), k, v (and ``extra``'s rows):
    ``x [B, T, H] -> [B, T, 3H (+ extra rows)]``. The stacked weight is built once and
    cached (``kernels.cached``), pre-packed for bfloat16 on the CPU. ``extra(weights,
    biases) -> (weight rows, bias)`` adds rows built from the layers after the first three."""
    b, t, _ = x.shape

    def stack(*params):
        weights, biases = params[: len(layers)], params[len(layers):]
        qw, kw, vw = weights[:3]
        qb, kb, vb = biases[:3]
        rows = [(qw.float() * scale).to(qw.dtype), kw, vw]
        cols = [(qb.float() * scale).to(qb.dtype), kb, vb]
        if extra is not None:
            w, bias = extra(weights[3:], biases[3:])
            rows.append(w.to(qw.dtype))
            cols.append(bias.to(qb.dtype))
        weight, bias = torch.cat(rows), torch.cat(cols)
        return weight, bias, pack(weight, b * t)

    params = tuple(layer.weight for layer in layers) + tuple(layer.bias for layer in layers)
    weight, bias, packed = cached(params, stack)
    return matmul(x, weight, bias, onednn_weight=packed)


class FastWavLMAttention(WavLMAttention):
    """:class:`~wavlm_live.model.attention.WavLMAttention` for CPU inference.

    q, k, v and the gate are one matmul: the four weights stacked into one
    ``[3H + 2 heads, H]`` weight (q's rows and bias scaled by ``1/sqrt(d)``, exact for
    d = 64; the gate's 4-output sums folded into its weight, its per-head ``d -> 2`` maps
    block-diagonal), built once and cached (pre-packed for bfloat16 on the CPU). One wide
    matmul instead of four narrow ones saves ~10% of the backbone's time at 1 s windows on
    this project's CPU (66 -> 60 ms in bf16). bfloat16 attention on the CPU runs with
    float32 scores (:func:`_attention_fp32_scores`); elsewhere SDPA with the gated bias as
    a float mask. ``residual`` (``[B, T, H]`` or None) is added to the output, fused into
    ``out_proj``. Under autograd: the reference forward plus the residual."""

    def forward(self, hidden_states: Tensor, position_bias: Tensor | None = None,
                key_padding: Tensor | None = None, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if _needs_grad(self.q_proj, self.k_proj, self.v_proj, self.gru_rel_pos_linear, self.out_proj):
            out, position_bias = super().forward(hidden_states, position_bias, key_padding)
            return (out if residual is None else residual + out), position_bias
        b, t, e = hidden_states.shape
        h, d = self.num_heads, self.head_dim
        if position_bias is None:
            position_bias = self.compute_bias(t)

        def gate_rows(weights, biases):
            gate_w = weights[0].float().view(2, 4, d).sum(1)  # [2, d]: the sums of 4 outputs are linear too
            gate_w = torch.block_diag(*[gate_w] * h)  # [2 heads, H]: head i's d inputs -> its 2 logits
            return gate_w, biases[0].float().view(2, 4).sum(1).repeat(h)

        layers = (self.q_proj, self.k_proj, self.v_proj, self.gru_rel_pos_linear)
        y = _stacked_projection(hidden_states, layers, 1.0 / math.sqrt(d), gate_rows)  # [B, T, 3H + 2 heads]
        q, k, v = (y[..., i * e:(i + 1) * e].view(b, t, h, d).transpose(1, 2) for i in range(3))
        # gate per (batch, head, query frame): g = a * (b * const - 1) + 2
        gate_a, gate_b = torch.sigmoid(y[..., 3 * e:].view(b, t, h, 2)).transpose(1, 2).unbind(-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const[..., 0] - 1.0) + 2.0
        if (EXPLICIT_BF16_ATTENTION and hidden_states.device.type == "cpu"
                and hidden_states.dtype == torch.bfloat16 and not torch.is_grad_enabled()):
            position_bias = position_bias.float()  # once, in layer 0; later layers get it in float32
            out = _attention_fp32_scores(q, k, v, gate, position_bias, key_padding)
        else:
            mask = gate.unsqueeze(-1) * position_bias  # [B, heads, T, T]
            if key_padding is not None:
                mask = mask.masked_fill(key_padding[:, None, None, :], float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=1.0)
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return linear(out, self.out_proj, residual=residual), position_bias


class FastSelfAttention(SelfAttention):
    """:class:`~wavlm_live.model.attention.SelfAttention` for CPU inference: q, k and v are
    one cached ``[3H, H]`` matmul (q's rows pre-scaled, pre-packed for bfloat16), and
    ``residual`` is fused into ``out_proj``. Attention itself stays SDPA in every dtype:
    with no bias to add, PyTorch's CPU flash kernel is 2-4x faster in bfloat16 than the
    explicit float32-score form WavLM's layers use (200-400 frames, 12 heads, this project's
    CPU) and as exact (~0.45% relative error against float64 on random inputs, tested).
    Under autograd: the reference forward plus the residual."""

    def forward(self, hidden_states: Tensor, position_bias: Tensor | None = None,
                key_padding: Tensor | None = None, residual: Tensor | None = None) -> tuple[Tensor, None]:
        if _needs_grad(self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            out, _ = super().forward(hidden_states, position_bias, key_padding)
            return (out if residual is None else residual + out), None
        b, t, e = hidden_states.shape
        h, d = self.num_heads, self.head_dim
        y = _stacked_projection(hidden_states, (self.q_proj, self.k_proj, self.v_proj), 1.0 / math.sqrt(d))
        q, k, v = (y[..., i * e:(i + 1) * e].view(b, t, h, d).transpose(1, 2) for i in range(3))
        mask = None if key_padding is None else ~key_padding[:, None, None, :]  # True: attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return linear(out, self.out_proj, residual=residual), None


# --- the opt-in --------------------------------------------------------------------------

FAST_MODULES: dict[type[nn.Module], type[nn.Module]] = {
    FeatureEncoder: FastFeatureEncoder,
    FeatureProjection: FastFeatureProjection,
    PositionalConvEmbedding: FastPositionalConvEmbedding,
    FeedForward: FastFeedForward,
    EncoderLayer: FastEncoderLayer,
    WavLMAttention: FastWavLMAttention,
    SelfAttention: FastSelfAttention,
}
"""Reference module class -> its CPU fast-path subclass (same ``__init__``, parameters and
state-dict keys; only ``forward`` differs)."""


def accelerate(model: nn.Module) -> nn.Module:
    """Switch ``model`` (any of this package's models or one of their modules) to the CPU
    fast path, in place, and return it.

    Every submodule whose class is exactly one of :data:`FAST_MODULES`' keys (the feature
    encoder, feature projection, positional conv, encoder layers, feed-forward and
    attention blocks) gets the fast subclass as its ``__class__``: the same parameters and
    buffers (nothing is copied or re-initialised), the same state-dict keys, call
    signatures, output shapes and dtypes; only the forwards change (see the module
    docstring). Subclasses of your own are left alone. Calling it again changes nothing.

    It applies to CPU inference in float32 or bfloat16: when any floating-point parameter is
    on another device or in another dtype (CUDA, float16, the meta device), the model is
    returned unchanged, without an error. Results equal the reference forwards up to float
    rounding. Derived weights (stacked projections, packed bfloat16 copies, about one more
    copy of the linear weights in bfloat16) are cached on first use and rebuilt when a
    weight changes. An accelerated model moved to another device afterwards still computes
    the right thing (the kernels fall back to plain PyTorch there), but only the CPU gains.
    """
    params = [p for p in model.parameters() if p.is_floating_point()]
    if not params or any(p.device.type != "cpu" or p.dtype not in (torch.float32, torch.bfloat16)
                         for p in params):
        return model
    for module in model.modules():
        fast = FAST_MODULES.get(type(module))
        if fast is not None:
            module.__class__ = fast
    return model
