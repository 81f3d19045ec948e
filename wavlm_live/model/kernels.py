"""Fused linear layers and convolutions for CPU inference.

``linear(x, layer, activation=None, residual=None)`` (and ``matmul`` for a bare weight)
computes ``act(x @ W^T + b)`` or
``x @ W^T + b + residual``. On the CPU, for float32 and bfloat16 inference (no autograd
needed), it runs oneDNN's matmul with the activation or the residual add fused as a
post-op, through ``torch.ops.mkldnn._linear_pointwise``: the kernel torch.compile's
inductor emits for CPU linears (PyTorch ``aten/src/ATen/native/mkldnn/Linear.cpp``). On
this project's CPUs it is 10-30% faster than ``F.linear`` (MKL) for WavLM's shapes and saves
the separate GELU / add pass. Everywhere else (CUDA, float16, training, or a PyTorch build
without the op) it is plain ``F.linear`` plus the activation / add, with the same results up
to float rounding.

bfloat16 weights are also pre-packed once into oneDNN's blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``, as inductor's weight-prepack pass does for
low-precision linears), which saves the per-call weight reorder: 5-11% on WavLM-base
sized matmuls on this project's CPU. The packed copy is cached per weight tensor and
rebuilt when the weight changes (its version counter moves), so loading new weights or
training in between is safe (``cached``). float32 keeps the plain weight (packing gains
~2% there).

``conv1d_time_major`` runs the feature encoder's strided convolutions on time-major frames
as the same fused matmul, and ``conv1d_gelu`` the positional convolution with its GELU
fused into oneDNN's convolution.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary


@functools.lru_cache(maxsize=None)
def _onednn_ok(dtype: torch.dtype) -> bool:
    """Whether the fused oneDNN linear runs for ``dtype`` in this PyTorch build on this CPU
    (probed once on a tiny input, and checked against F.linear)."""
    if dtype not in (torch.float32, torch.bfloat16):
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        with torch.inference_mode():
            x = torch.ones(1, 2, 4, dtype=dtype)
            w = torch.ones(3, 4, dtype=dtype)
            b = torch.ones(3, dtype=dtype)
            y = op(x, w, b, "gelu", [], "none")
            z = op.binary(x, y, w, b, "add")
        return bool(torch.allclose(z.float(), (F.linear(x, w, b) + F.gelu(F.linear(x, w, b))).float(), atol=1e-2))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


PACK_BF16_WEIGHTS = True
"""Pre-pack bfloat16 weights for oneDNN (see the module docstring); a switch for benchmarks."""

_derived: WeakIdKeyDictionary = WeakIdKeyDictionary()  # first tensor -> (versions key, derived value)


def cached(tensors: Tensor | tuple[Tensor, ...], make):
    """``make(*tensors)`` (a packed, reshaped or concatenated copy of parameters), computed
    once under ``torch.inference_mode`` and cached on the first tensor; rebuilt when any of
    them changes (version counter or storage), so loading new weights, ``.to()`` or training
    in between is safe, and when ``PACK_BF16_WEIGHTS`` is switched.

    Inference tensors (parameters created under ``torch.inference_mode``, e.g. a model built
    or loaded by hand inside it) have no version counter, so an in-place change to them
    could not be seen: for them ``make`` runs on every call and nothing is cached (correct,
    only slower; :func:`~wavlm_live.model.load_pretrained` always creates normal tensors)."""
    tensors = (tensors,) if isinstance(tensors, Tensor) else tuple(tensors)
    if any(t.is_inference() for t in tensors):
        with torch.inference_mode():
            return make(*(t.detach() for t in tensors))
    key = tuple((t._version, t.data_ptr()) for t in tensors) + (PACK_BF16_WEIGHTS,)
    hit = _derived.get(tensors[0])
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.inference_mode():
        value = make(*(t.detach() for t in tensors))
    _derived[tensors[0]] = (key, value)
    return value


@functools.lru_cache(maxsize=None)
def _packing_ok() -> bool:
    """Whether this build packs bfloat16 linear weights and the packed matmul matches."""
    try:
        with torch.inference_mode():
            x = torch.randn(3, 16, dtype=torch.bfloat16)
            w = torch.randn(8, 16, dtype=torch.bfloat16)
            b = torch.randn(8, dtype=torch.bfloat16)
            op = torch.ops.mkldnn._linear_pointwise
            packed = torch.ops.mkldnn._reorder_linear_weight(w, 64)
            return bool(torch.equal(op(x, packed, b, "none", [], ""), op(x, w, b, "none", [], "")))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def pack(weight: Tensor, rows: int) -> Tensor:
    """``weight`` ``[out, in]`` in oneDNN's blocked layout for bfloat16 matmuls with about
    ``rows`` input rows, or ``weight`` itself off the CPU and where packing is off or not
    available."""
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16 or not PACK_BF16_WEIGHTS or not _packing_ok():
        return weight
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def _cpu_inference(x: Tensor, weight: Tensor) -> bool:
    """Whether ``x`` and ``weight`` are CPU tensors of one dtype and no gradient is needed:
    the case the oneDNN post-op kernels below serve."""
    return (x.device.type == "cpu" and x.dtype == weight.dtype
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    return _cpu_inference(x, weight) and x.dim() >= 2 and _onednn_ok(x.dtype)


def linear(x: Tensor, layer: nn.Linear, activation: str | None = None, residual: Tensor | None = None) -> Tensor:
    """``layer(x)`` followed by ``activation`` ("gelu": exact erf GELU, or None) or, when
    ``residual`` is given, ``+ residual``. Shape: ``[..., in] -> [..., out]``; ``residual``
    has the output shape. Raises ``ValueError`` when both are given."""
    packed = None
    if _use_onednn(x, layer.weight):
        rows = x.numel() // x.shape[-1]
        packed = cached(layer.weight, lambda w: pack(w, rows))
    return matmul(x, layer.weight, layer.bias, activation, residual, packed)


def matmul(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None,
           residual: Tensor | None = None, onednn_weight: Tensor | None = None) -> Tensor:
    """``x @ weight^T + bias``, then ``activation`` ("gelu": exact erf GELU, or None) or
    ``+ residual``; fused in one oneDNN call for CPU inference (see the module docstring).
    ``onednn_weight`` is a pre-packed (or otherwise prepared) copy of ``weight`` for that
    call. Shapes: ``x [..., in]``, ``weight [out, in]``, ``bias [out]`` -> ``[..., out]``.
    Raises ``ValueError`` for an unsupported activation or both an activation and a residual."""
    if activation is not None and residual is not None:
        raise ValueError("linear takes an activation or a residual, not both")
    if activation not in (None, "gelu"):
        raise ValueError(f"unsupported fused activation {activation!r}")
    if _use_onednn(x, weight):
        op = torch.ops.mkldnn._linear_pointwise
        x = x.contiguous()
        w = weight if onednn_weight is None else onednn_weight
        if residual is not None:
            return op.binary(x, residual.contiguous(), w, bias, "add")
        if activation == "gelu":
            return op(x, w, bias, "gelu", [], "none")
        return op(x, w, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    if activation == "gelu":
        return F.gelu(y)
    return y if residual is None else residual + y


def conv1d_time_major(x: Tensor, conv: nn.Conv1d, activation: str | None = None) -> Tensor:
    """``conv`` over time on time-major frames, then ``activation`` ("gelu" or None).
    Shape: ``[B, T, C_in] -> [B, T', C_out]`` with ``T' = (T - kernel) // stride + 1``.

    For CPU inference of an unpadded, undilated, ungrouped conv (every feature-encoder layer
    after the first) it is one oneDNN matmul with the GELU fused: the ``kernel`` input frames
    of each output frame are a row of ``kernel * C_in`` values (a view when kernel == stride,
    else one copy), times the conv weight reshaped to ``[C_out, kernel * C_in]`` (cached,
    and pre-packed for bfloat16). On this project's CPU that is 5-15% faster than oneDNN's
    convolution at WavLM's shapes, and the stack stays time-major, so the transposes around
    the conv stack go. Elsewhere ``F.conv1d`` on the transposed input."""
    k, s = conv.kernel_size[0], conv.stride[0]
    simple = conv.padding == (0,) and conv.dilation == (1,) and conv.groups == 1
    if simple and _use_onednn(x, conv.weight) and x.dim() == 3 and x.shape[1] >= k:
        b, t, c = x.shape
        t_out = (t - k) // s + 1
        x = x.contiguous()
        rows = x.as_strided((b, t_out, k * c), (x.stride(0), s * c, 1))
        def as_matrix(w: Tensor) -> tuple[Tensor, Tensor]:  # [C_out, C_in, k] -> [C_out, k * C_in], packed
            matrix = w.permute(0, 2, 1).reshape(w.shape[0], -1).contiguous()
            return matrix, pack(matrix, b * t_out)

        weight, packed = cached(conv.weight, as_matrix)
        return matmul(rows, weight, conv.bias, activation, onednn_weight=packed)
    y = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                 conv.groups).transpose(1, 2)
    return F.gelu(y) if activation == "gelu" else y


@functools.lru_cache(maxsize=None)
def _conv_gelu_ok(dtype: torch.dtype) -> bool:
    """Whether oneDNN's convolution with a fused exact GELU runs for ``dtype`` here and
    matches ``F.gelu(F.conv1d(...))`` (probed once on a tiny input)."""
    if dtype not in (torch.float32, torch.bfloat16):
        return False
    try:
        with torch.inference_mode():
            x = torch.linspace(-2, 2, 2 * 4 * 9, dtype=dtype).view(2, 4, 9)
            w = torch.linspace(-1, 1, 6 * 2 * 3, dtype=dtype).view(6, 2, 3)
            b = torch.linspace(-0.5, 0.5, 6, dtype=dtype)
            y = torch.ops.mkldnn._convolution_pointwise(x, w, b, [1], [2], [1], 2, "gelu", [], "none")
            ref = F.gelu(F.conv1d(x.float(), w.float(), b.float(), stride=2, padding=1, groups=2))
        return bool(torch.allclose(y.float(), ref, atol=3e-2))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


@functools.lru_cache(maxsize=None)
def _grouped_bf16_ok(c_in: int, c_out: int, kernel: int, groups: int) -> bool:
    """Whether a bfloat16 grouped Conv1d of this shape matches float32 on this CPU (probed
    once per shape, relative error < 2%). oneDNN 3.12 on AMX CPUs (Sapphire Rapids)
    returns wrong results for grouped bf16 convolutions with an even number of input
    channels per group below 16 (relative error 60-100% for 2, 4, 6, 8, 12; measured with
    PyTorch 2.13, both through ``F.conv1d`` and the fused kernel). WavLM's real checkpoints
    (48 or 64 channels per group) are not affected; small models are."""
    if groups == 1:
        return True
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c_in, kernel + 16, generator=gen)
    w = torch.randn(c_out, c_in // groups, kernel, generator=gen) / (kernel * c_in / groups) ** 0.5
    with torch.inference_mode():
        ref = F.conv1d(x, w, padding=kernel // 2, groups=groups)
        got = F.conv1d(x.bfloat16(), w.bfloat16(), padding=kernel // 2, groups=groups).float()
        fused = got
        if _conv_gelu_ok(torch.bfloat16):
            fused = torch.ops.mkldnn._convolution_pointwise(
                x.bfloat16(), w.bfloat16(), None, [kernel // 2], [1], [1], groups, "none", [], "none").float()
    err = max(((got - ref).norm() / ref.norm()).item(), ((fused - ref).norm() / ref.norm()).item())
    return err < 2e-2


def conv1d_gelu(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """``F.gelu(conv(x))`` (exact erf GELU). On the CPU, for float32 and bfloat16 inference,
    one oneDNN convolution with the GELU fused as a post-op
    (``torch.ops.mkldnn._convolution_pointwise``, the kernel inductor emits for conv +
    pointwise on CPU): it saves a full pass over the output, 15-50% of the layer's time
    at WavLM's feature-encoder shapes on this project's CPU. A bfloat16 shape that this oneDNN
    build gets wrong (``_grouped_bf16_ok``) runs in float32 instead. Elsewhere plain ``F.conv1d``
    then ``F.gelu``. Shape: ``[B, C_in, N] -> [B, C_out, T]``."""
    if x.device.type == "cpu" and x.dtype == torch.bfloat16 and not _grouped_bf16_ok(
            conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.groups):
        # this oneDNN build computes the grouped bf16 convolution wrongly for this shape:
        # run it in float32 and round the result to bfloat16 once
        weight = conv.weight.float()
        bias = conv.bias.float() if conv.bias is not None else None
        y = F.conv1d(x.float(), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return F.gelu(y).to(x.dtype)
    if _cpu_inference(x, conv.weight) and x.dim() == 3 and isinstance(conv.padding, tuple) and _conv_gelu_ok(x.dtype):
        return torch.ops.mkldnn._convolution_pointwise(
            x.contiguous(), conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups, "gelu", [], "none")
    return F.gelu(conv(x))
