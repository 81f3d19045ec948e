"""Self-attention in reference PyTorch: WavLM's, with the gated relative position bias
(:class:`WavLMAttention`), and the plain multi-head attention of Wav2Vec2 / XLS-R and HuBERT
(:class:`SelfAttention`). Both have the same call signature, so an encoder layer takes either.

Source of the algorithm: WavLM (Chen et al., 2022, "WavLM: Large-Scale Self-Supervised
Pre-Training for Full Stack Speech Processing", section 2.2) as implemented by transformers
5.24 ``modeling_wavlm.py`` ``WavLMAttention`` (``compute_bias``,
``_relative_positions_bucket`` and the gate); plain attention as transformers'
``modeling_wav2vec2.py`` ``Wav2Vec2Attention`` / ``HubertAttention`` (q scaled by
``head_dim ** -0.5``, key padding masked). The gated bias goes to
``torch.nn.functional.scaled_dot_product_attention`` as an additive float mask, with key
padding folded in as ``-inf`` (transformers passes the same two to
``F.multi_head_attention_forward``).

These are the reference forwards: four ``nn.Linear`` projections, SDPA, ``out_proj``, in
every device and dtype. The CPU fast path (one stacked q/k/v/gate matmul, fused residual
add, float32-score attention for bfloat16) lives in :mod:`wavlm_live.model.fast`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

    def gate(self, hidden_states: Tensor) -> Tensor:
        """The per-head, per-query gate of the position bias, as transformers: each head's
        ``d`` inputs through ``gru_rel_pos_linear`` (8 outputs, summed in fours to two logits
        a, b), ``sigmoid``, then ``a * (b * gru_rel_pos_const - 1) + 2``.
        Shape: ``[B, T, H] -> [B, heads, T]``."""
        b, t, _ = hidden_states.shape
        logits = self.gru_rel_pos_linear(hidden_states.view(b, t, self.num_heads, self.head_dim))
        gate_a, gate_b = torch.sigmoid(logits.view(b, t, self.num_heads, 2, 4).sum(-1)).transpose(1, 2).unbind(-1)
        return gate_a * (gate_b * self.gru_rel_pos_const[..., 0] - 1.0) + 2.0

    def forward(self, hidden_states: Tensor, position_bias: Tensor | None = None,
                key_padding: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attend over the window.

        Args:
            hidden_states: ``[B, T, H]`` attention input (residual stream for post-LN
                layers, LayerNorm output for stable-LN layers); it also drives the gate.
            position_bias: ``[heads, T, T]`` ungated bias from layer 0, or None in layer 0.
            key_padding: ``[B, T]`` bool, True for padded frames (never attended to), or None.

        Returns: ``([B, T, H] attention output, [heads, T, T] ungated bias for the next layer)``.
        """
        b, t, _ = hidden_states.shape
        h, d = self.num_heads, self.head_dim
        if position_bias is None:
            position_bias = self.compute_bias(t)
        q, k, v = (proj(hidden_states).view(b, t, h, d).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        mask = self.gate(hidden_states).unsqueeze(-1) * position_bias  # [B, heads, T, T]
        if key_padding is not None:
            mask = mask.masked_fill(key_padding[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))  # scale 1/sqrt(d)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.embed_dim)), position_bias


class SelfAttention(nn.Module):
    """Plain multi-head self-attention (Wav2Vec2, XLS-R, HuBERT): no position bias; q is
    scaled by ``head_dim ** -0.5``; padded keys are never attended to. State-dict keys match
    transformers' ``Wav2Vec2Attention`` (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``).

    Same call signature as :class:`WavLMAttention` (the ``position_bias`` argument is
    ignored and ``None`` is handed on)."""

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

    def forward(self, hidden_states: Tensor, position_bias: Tensor | None = None,
                key_padding: Tensor | None = None) -> tuple[Tensor, None]:
        """Attend over the window.

        Args:
            hidden_states: ``[B, T, H]`` attention input (residual stream for post-LN
                layers, LayerNorm output for stable-LN layers).
            position_bias: ignored (plain attention has none).
            key_padding: ``[B, T]`` bool, True for padded frames (never attended to), or None.

        Returns: ``([B, T, H] attention output, None)``.
        """
        b, t, _ = hidden_states.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = (proj(hidden_states).view(b, t, h, d).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        mask = None if key_padding is None else ~key_padding[:, None, None, :]  # True: attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scale 1/sqrt(d)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.embed_dim)), None
