"""WavLM self-attention with the gated relative position bias, on
``torch.nn.functional.scaled_dot_product_attention``.

Source of the algorithm: WavLM (Chen et al., 2022, "WavLM: Large-Scale Self-Supervised
Pre-Training for Full Stack Speech Processing", section 2.2) as implemented by transformers
5.24 ``WavLMAttention`` (``compute_bias``, ``_relative_positions_bucket`` and the gate). The
gated bias goes to SDPA as an additive float mask, with key padding folded in as ``-inf``,
so the fused kernels run instead of materialising softmax weights. The exception is
bfloat16 inference on the CPU, where an explicit float32-score softmax is both faster and
more exact than the CPU kernel (``_attention_fp32_scores``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import linear


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


def _attention_fp32_scores(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Attention for bfloat16 on the CPU: scores, bias and softmax in float32, then the
    bfloat16 probabilities times bfloat16 values. q, k, v ``[B, heads, T, d]`` bfloat16,
    mask ``[B, heads, T, T]`` (any float dtype, ``-inf`` for padded keys) -> ``[B, heads, T, d]``
    bfloat16.

    PyTorch's CPU flash-attention kernel gains nothing from bfloat16 at WavLM's window
    lengths (it converts blocks to float32) and takes the bias in bfloat16 (8-bit mantissa).
    This form is 1.4x faster at 200 frames (4 s) on this project's CPU, one thread; with the
    bias in float32, as the layer passes it, its output's relative RMS error against float32
    attention is ~0.3% against the kernel's ~0.8% (the backbone's total bfloat16 error, ~1.5%,
    is set by the matmuls and stays the same)."""
    b, h, t, d = q.shape
    scores = torch.baddbmm(mask.float().reshape(b * h, t, t), q.reshape(b * h, t, d).float(),
                           k.reshape(b * h, t, d).float().transpose(1, 2), alpha=1.0 / math.sqrt(d))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.bmm(probs, v.reshape(b * h, t, d)).view(b, h, t, d)


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
            table = relative_position_buckets(length, self.num_buckets, self.max_distance, device)
            self._buckets = table
        return table[:length, :length]

    def compute_bias(self, length: int) -> Tensor:
        """Ungated relative position bias. Shape: ``[heads, length, length]``, dtype of
        ``rel_attn_embed``."""
        weight = self.rel_attn_embed.weight
        return F.embedding(self._bucket_table(length, weight.device), weight).permute(2, 0, 1).contiguous()

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
        # gate per (batch, head, query frame): g = a * (b * const - 1) + 2
        x_heads = hidden_states.view(b, t, self.num_heads, self.head_dim)
        proj = self.gru_rel_pos_linear(x_heads).view(b, t, self.num_heads, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(proj).transpose(1, 2).unbind(-1)  # [B, heads, T] each
        gate = gate_a * (gate_b * self.gru_rel_pos_const[..., 0] - 1.0) + 2.0
        explicit = _explicit_softmax(hidden_states)
        bias = position_bias.float() if explicit else position_bias  # float32 bias: the product promotes
        mask = gate.unsqueeze(-1) * bias  # [B, heads, T, T]
        if key_padding is not None:
            mask = mask.masked_fill(key_padding[:, None, None, :], float("-inf"))

        q, k, v = (linear(hidden_states, proj).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        if explicit:
            out = _attention_fp32_scores(q, k, v, mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        out = out.transpose(1, 2).reshape(b, t, self.embed_dim)
        return linear(out, self.out_proj, residual=residual), position_bias
