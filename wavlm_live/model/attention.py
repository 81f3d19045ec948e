"""Self-attention on ``torch.nn.functional.scaled_dot_product_attention``: WavLM's, with
the gated relative position bias (:class:`WavLMAttention`), and the plain multi-head
attention of Wav2Vec2 / XLS-R and HuBERT (:class:`SelfAttention`). Both have the same call
signature, so an encoder layer takes either.

Source of the algorithm: WavLM (Chen et al., 2022, "WavLM: Large-Scale Self-Supervised
Pre-Training for Full Stack Speech Processing", section 2.2) as implemented by transformers
5.24 ``WavLMAttention`` (``compute_bias``, ``_relative_positions_bucket`` and the gate);
plain attention as transformers' ``Wav2Vec2Attention`` / ``HubertAttention`` (q scaled by
``head_dim ** -0.5``, key padding masked). The gated bias goes to SDPA as an additive float
mask, with key padding folded in as ``-inf``, so the fused kernels run instead of
materialising softmax weights. The exception is bfloat16 inference on the CPU, where an
explicit float32-score softmax is both faster and more exact than the CPU kernel
(``_attention_fp32_scores``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import cached, linear, matmul, pack


def relative_position_buckets(length: int, num_buckets: int = 320, max_distance: int = 800,
                              device: torch.device | str | None = None) -> Tensor:
    """Bucket of every (query i, key j) pair of a ``length``-frame window, as transformers'
    ``WavLMAttention._relative_positions_bucket``: rel = j - i; ``num_buckets // 2`` is
    added when rel > 0; |rel| below ``num_buckets // 4`` is its own bucket, larger distances
    share log-spaced buckets that saturate at ``max_distance`` frames.

    Shape: ``[length, length]``, int64, on ``device``.
    """
    half = num_buckets // 2
    max_exact = half // 2
    pos = torch.arange(length, dtype=torch.long, device=device)
    rel = pos[None, :] - pos[:, None]
    buckets = (rel > 0).to(torch.long) * half
    rel = rel.abs()
    # same float32 ops as transformers so the buckets agree bit for bit at the boundaries
    large = torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    large = torch.clamp_max((max_exact + large).to(torch.long), half - 1)
    return buckets + torch.where(rel < max_exact, rel, large)


EXPLICIT_BF16_ATTENTION = True
"""Use :func:`_attention_fp32_scores` for bfloat16 CPU inference; a switch for benchmarks."""


def _explicit_softmax(x: Tensor) -> bool:
    """Whether attention on ``x`` (the layer's bfloat16 CPU inference input) takes the float32-score path."""
    return (EXPLICIT_BF16_ATTENTION and x.device.type == "cpu" and x.dtype == torch.bfloat16
            and not torch.is_grad_enabled())


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


class WavLMAttention(nn.Module):
    """Multi-head self-attention with WavLM's gated relative position bias.

    Only the first layer owns ``rel_attn_embed`` and computes the (ungated) bias
    ``[heads, T, T]``; later layers receive it. Each layer gates it per head and query frame
    with ``gru_rel_pos_linear`` / ``gru_rel_pos_const``. State-dict keys match transformers
    (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``gru_rel_pos_const``,
    ``gru_rel_pos_linear``, ``rel_attn_embed``).
    """

    def __init__(self, embed_dim: int, num_heads: int, num_buckets: int = 320, max_distance: int = 800,
                 has_relative_position_bias: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        if has_relative_position_bias:
            self.rel_attn_embed = nn.Embedding(num_buckets, num_heads)
        self._buckets: Tensor | None = None  # cached bucket table, sliced for shorter windows

    def _bucket_table(self, length: int, device: torch.device) -> Tensor:
        """``[length, length]`` buckets; the table depends on j - i only, so the largest one
        built so far serves every shorter window (top-left slice), on ``device``."""
        table = self._buckets
        if table is None or table.shape[0] < length or table.device != device:
            with torch.inference_mode(False):  # a normal tensor: usable under autograd after inference
                table = relative_position_buckets(length, self.num_buckets, self.max_distance, device)
            self._buckets = table
        return table[:length, :length]

    def compute_bias(self, length: int) -> Tensor:
        """Ungated relative position bias. Shape: ``[heads, length, length]``, dtype of
        ``rel_attn_embed``."""
        weight = self.rel_attn_embed.weight
        return F.embedding(self._bucket_table(length, weight.device), weight).permute(2, 0, 1).contiguous()

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q (scaled by ``1/sqrt(d)``), k, v ``[B, heads, T, d]`` and the gate's two logits
        per head ``[B, T, heads, 2]`` (``gru_rel_pos_linear``'s 8 outputs summed in fours,
        as transformers does) from ``x [B, T, H]``.

        Without autograd this is one matmul: q, k, v and the gate stacked into one
        ``[3H + 2 heads, H]`` weight (q's rows and bias scaled by ``1/sqrt(d)``, exact for
        d = 64; the gate's 4-output sums folded into its weight, its per-head ``d -> 2``
        maps block-diagonal), built once and cached (pre-packed for bfloat16 on the CPU).
        One wide matmul instead of four narrow ones saves ~10% of the backbone's time at
        1 s windows on this project's CPU (66 -> 60 ms in bf16). Under autograd, four
        separate layers."""
        b, t, e = x.shape
        h, d = self.num_heads, self.head_dim
        scale = 1.0 / math.sqrt(d)
        layers = (self.q_proj, self.k_proj, self.v_proj, self.gru_rel_pos_linear)
        if torch.is_grad_enabled() and any(p.requires_grad for layer in layers for p in layer.parameters()):
            q, k, v = (linear(x, layer).view(b, t, h, d).transpose(1, 2) for layer in layers[:3])
            gate = self.gru_rel_pos_linear(x.view(b, t, h, d)).view(b, t, h, 2, 4).sum(-1)
            return q * scale, k, v, gate

        def stack(qw, kw, vw, gw, qb, kb, vb, gb):
            gate_w = gw.float().view(2, 4, d).sum(1)  # [2, d]: the sums of 4 outputs are linear too
            gate_w = torch.block_diag(*[gate_w] * h)  # [2 heads, H]: head i's d inputs -> its 2 logits
            weight = torch.cat([(qw.float() * scale).to(qw.dtype), kw, vw, gate_w.to(qw.dtype)])
            bias = torch.cat([(qb.float() * scale).to(qb.dtype), kb, vb,
                              gb.float().view(2, 4).sum(1).repeat(h).to(qb.dtype)])
            return weight, bias, pack(weight, b * t)

        params = tuple(layer.weight for layer in layers) + tuple(layer.bias for layer in layers)
        weight, bias, packed = cached(params, stack)
        y = matmul(x, weight, bias, onednn_weight=packed)  # [B, T, 3H + 2 heads]
        q, k, v = (y[..., i * e:(i + 1) * e].view(b, t, h, d).transpose(1, 2) for i in range(3))
        return q, k, v, y[..., 3 * e:].view(b, t, h, 2)

    def forward(self, hidden_states: Tensor, position_bias: Tensor | None = None,
                key_padding: Tensor | None = None, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attend over the window.

        Args:
            hidden_states: ``[B, T, H]`` attention input (residual stream for post-LN
                layers, LayerNorm output for stable-LN layers); it also drives the gate.
            position_bias: ``[heads, T, T]`` ungated bias from layer 0, or None in layer 0.
            key_padding: ``[B, T]`` bool, True for padded frames (never attended to), or None.
            residual: ``[B, T, H]`` added to the output (fused into ``out_proj``), or None.

        Returns: ``([B, T, H] attention output (+ residual), [heads, T, T] ungated bias for the
        next layer)``.
        """
        b, t, _ = hidden_states.shape
        if position_bias is None:
            position_bias = self.compute_bias(t)
        q, k, v, proj = self._project(hidden_states)
        # gate per (batch, head, query frame): g = a * (b * const - 1) + 2
        gate_a, gate_b = torch.sigmoid(proj).transpose(1, 2).unbind(-1)  # [B, heads, T] each
        gate = gate_a * (gate_b * self.gru_rel_pos_const[..., 0] - 1.0) + 2.0
        if _explicit_softmax(hidden_states):
            position_bias = position_bias.float()  # once, in layer 0; later layers get it in float32
            out = _attention_fp32_scores(q, k, v, gate, position_bias, key_padding)
        else:
            mask = gate.unsqueeze(-1) * position_bias  # [B, heads, T, T]
            if key_padding is not None:
                mask = mask.masked_fill(key_padding[:, None, None, :], float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=1.0)
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return linear(out, self.out_proj, residual=residual), position_bias


class SelfAttention(nn.Module):
    """Plain multi-head self-attention (Wav2Vec2, XLS-R, HuBERT): no position bias; q is
    scaled by ``head_dim ** -0.5``; padded keys are never attended to. State-dict keys match
    transformers' ``Wav2Vec2Attention`` (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``).

    Same call signature as :class:`WavLMAttention` (the ``position_bias`` argument is
    ignored and ``None`` is handed on), and the same projection fast path: without autograd
    q, k and v are one cached ``[3H, H]`` matmul (q's rows pre-scaled, pre-packed for
    bfloat16). Attention itself is SDPA in every dtype: with no bias to add, PyTorch's CPU
    flash kernel is 2-4x faster in bfloat16 than the explicit float32-score form WavLM's
    layers use (200-400 frames, 12 heads, this project's CPU) and as exact (~0.45% relative
    error against float64 on random inputs, tested)."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q (scaled by ``1/sqrt(d)``), k, v ``[B, heads, T, d]`` from ``x [B, T, H]``."""
        b, t, e = x.shape
        h, d = self.num_heads, self.head_dim
        scale = 1.0 / math.sqrt(d)
        layers = (self.q_proj, self.k_proj, self.v_proj)
        if torch.is_grad_enabled() and any(p.requires_grad for layer in layers for p in layer.parameters()):
            q, k, v = (linear(x, layer).view(b, t, h, d).transpose(1, 2) for layer in layers)
            return q * scale, k, v

        def stack(qw, kw, vw, qb, kb, vb):
            weight = torch.cat([(qw.float() * scale).to(qw.dtype), kw, vw])
            bias = torch.cat([(qb.float() * scale).to(qb.dtype), kb, vb])
            return weight, bias, pack(weight, b * t)

        params = tuple(layer.weight for layer in layers) + tuple(layer.bias for layer in layers)
        weight, bias, packed = cached(params, stack)
        y = matmul(x, weight, bias, onednn_weight=packed)  # [B, T, 3H]
        q, k, v = (y[..., i * e:(i + 1) * e].view(b, t, h, d).transpose(1, 2) for i in range(3))
        return q, k, v

    def forward(self, hidden_states: Tensor, position_bias: Tensor | None = None,
                key_padding: Tensor | None = None, residual: Tensor | None = None) -> tuple[Tensor, None]:
        """Attend over the window.

        Args:
            hidden_states: ``[B, T, H]`` attention input (residual stream for post-LN
                layers, LayerNorm output for stable-LN layers).
            position_bias: ignored (plain attention has none).
            key_padding: ``[B, T]`` bool, True for padded frames (never attended to), or None.
            residual: ``[B, T, H]`` added to the output (fused into ``out_proj``), or None.

        Returns: ``([B, T, H] attention output (+ residual), None)``.
        """
        b, t, _ = hidden_states.shape
        q, k, v = self._project(hidden_states)
        mask = None if key_padding is None else ~key_padding[:, None, None, :]  # True: attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return linear(out, self.out_proj, residual=residual), None
