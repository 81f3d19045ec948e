"""Loading and saving Hugging Face format WavLM, Wav2Vec2 (XLS-R) and HuBERT checkpoints,
and device/dtype choice.

A checkpoint is a folder (local, or a Hub snapshot fetched with huggingface_hub) holding
``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, usually
``preprocessor_config.json`` and, for CTC, ``vocab.json`` with the tokenizer files. The task
model is chosen from ``config.json``'s ``architectures`` (``WavLMForCTC``,
``Wav2Vec2ForXVector``, ``HubertForCTC``, ...), the family from its ``model_type``, and the
two must agree. Every state-dict key is accounted for: the positional conv's weight-norm
factors (``weight_g``/``weight_v`` or ``parametrizations.weight.original0``/``original1``)
are folded into one weight, training-only keys are dropped by name, and any other missing,
unexpected or mis-shaped key is a :class:`ModelLoadError` that lists them. transformers is
never imported.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from wavlm_live.timegrid import SAMPLE_RATE

from .config import ARCH_PREFIX, FAMILIES, PreprocessorConfig, WavLMConfig
from .ctc import CTCDecoder, CTCVocabulary
from .fast import accelerate
from .shared import share_feature_encoder
from .heads import WavLMForAudioFrameClassification, WavLMForCTC, WavLMForSequenceClassification, WavLMForXVector

_HEADS: dict[str, tuple[str, type[nn.Module]]] = {
    "ForCTC": ("ctc", WavLMForCTC),
    "ForAudioFrameClassification": ("frames", WavLMForAudioFrameClassification),
    "ForXVector": ("xvector", WavLMForXVector),
    "ForSequenceClassification": ("sequence", WavLMForSequenceClassification),
}
_FAMILY_HEADS = {"wavlm": tuple(_HEADS), "wav2vec2": tuple(_HEADS),
                 # transformers has no HuBERT frame or x-vector head
                 "hubert": ("ForCTC", "ForSequenceClassification")}

ARCHITECTURES: dict[str, tuple[str, type[nn.Module], str]] = {
    ARCH_PREFIX[family] + head: (*_HEADS[head], family)
    for family, heads in _FAMILY_HEADS.items() for head in heads
}
"""Supported ``architectures`` entries of ``config.json``: task name, model class and the
``model_type`` the config must have (``"Wav2Vec2ForCTC": ("ctc", WavLMForCTC, "wav2vec2")``)."""

TASKS = tuple(dict.fromkeys(task for task, _, _ in ARCHITECTURES.values()))

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_OPTIONAL_FILES = ("preprocessor_config.json",)
_VOCAB_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")

# training-only weights, dropped by name: SpecAugment's mask embedding, the pre-training
# quantizer and projections, and the x-vector AM-softmax loss weight
_IGNORED = re.compile(r"^((wavlm|wav2vec2|hubert)\.)?(masked_spec_embed|quantizer\..+|project_q\..+"
                      r"|project_hid\..+|objective\.weight)$")
_POS_CONV = "encoder.pos_conv_embed.conv."  # after the family prefix ("wavlm.", "wav2vec2.", "hubert.")
_WEIGHT_NORM_NAMES = (("weight_g", "weight_v"),  # (g, v) key names: old Hub files, transformers 5
                      ("parametrizations.weight.original0", "parametrizations.weight.original1"))


class ModelLoadError(ValueError):
    """A checkpoint could not be found, read or matched to the model; the message names the
    model and says what to do."""


@dataclass
class Pretrained:
    """A loaded checkpoint.

    model: the task model, eval mode, on ``device`` in ``dtype``.
    config / preprocessor: the checkpoint's ``config.json`` / ``preprocessor_config.json``
        (defaults of ``Wav2Vec2FeatureExtractor`` when the file is absent).
    vocab / decoder: the CTC vocabulary and greedy decoder (``task == "ctc"``), else None.
    task: "ctc", "frames" or "xvector". source: the name or folder as given; path: the
    resolved local folder. device / dtype: where and how the model runs. family /
    architecture: "WavLM" / "Wav2Vec2" / "HuBERT" and e.g. "Wav2Vec2ForCTC".
    """

    model: nn.Module
    config: WavLMConfig
    preprocessor: PreprocessorConfig
    vocab: CTCVocabulary | None
    decoder: CTCDecoder | None
    task: str
    source: str
    path: Path
    device: torch.device
    dtype: torch.dtype

    @property
    def family(self) -> str:
        """The model family: "WavLM", "Wav2Vec2" (also XLS-R) or "HuBERT"."""
        return self.config.family

    @property
    def architecture(self) -> str:
        """The ``config.json`` architecture loaded, e.g. "Wav2Vec2ForCTC"."""
        return architecture_name(self.model)


def _cpu_bf16_flags() -> bool:
    """True when the CPU has native bf16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``;
    Arm ``bf16``), read from ``/proc/cpuinfo`` (False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


BF16_PROBE_SHAPE = (200, 768, 3072)
"""Rows, inputs, outputs of the probe matmul: a wavlm-base-plus FFN layer on a 4 s window."""


def bf16_matmul_ratio(reps: int = 5) -> float:
    """Time of a bfloat16 matmul over the float32 one on this CPU (best of ``reps``
    alternating runs of ``F.linear`` at :data:`BF16_PROBE_SHAPE`, the current thread
    count); below 1: bfloat16 is faster. About 0.1 s."""
    rows, n_in, n_out = BF16_PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, n_in, generator=gen), torch.randn(n_out, n_in, generator=gen)
    pairs = {torch.float32: (x, w), torch.bfloat16: (x.bfloat16(), w.bfloat16())}
    best = dict.fromkeys(pairs, float("inf"))
    with torch.inference_mode():
        for _ in range(reps + 1):  # the first round warms oneDNN up
            for dtype, (a, b) in pairs.items():
                t0 = time.perf_counter()
                torch.nn.functional.linear(a, b)
                best[dtype] = min(best[dtype], time.perf_counter() - t0)
    return best[torch.bfloat16] / best[torch.float32]


BF16_MIN_GAIN = 0.9
"""``"auto"`` takes bfloat16 on a CPU only when its probe matmul takes under this share of
float32's time. Measured with ``bench/model_speed.py`` (4 s windows, 2 threads): a 2-core
AMD EPYC with avx512_bf16 ran our bf16 backbone in 186 ms against 345 ms in float32; a
2-core Intel Xeon with avx512_bf16 and no AMX in 388 ms against 289 ms (its probe matmul:
1.5x float32's time), so the CPU flags alone do not tell."""


@functools.lru_cache(maxsize=1)
def _cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (:func:`_cpu_bf16_flags`) and a
    bfloat16 matmul measured faster than float32 (:func:`bf16_matmul_ratio` under
    :data:`BF16_MIN_GAIN`); probed once per process."""
    return _cpu_bf16_flags() and bf16_matmul_ratio() < BF16_MIN_GAIN


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
    ``torch.device`` to a ``torch.device``. Raises ``ValueError`` for an unknown name or a
    CUDA device that this machine does not have."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist; this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def resolve_dtype(dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu") -> torch.dtype:
    """Compute dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or a ``torch.dtype``), or
    ``"auto"``: bfloat16 on a CUDA GPU that supports it and on a CPU with native bf16 dot
    products (avx512_bf16/AMX) where a probe matmul is faster in bf16 than in float32
    (:data:`BF16_MIN_GAIN`), else float32 (float16 is never chosen automatically: WavLM's
    large activations can overflow it). Raises ``ValueError`` for anything else."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"unsupported dtype {dtype}; use float32, bfloat16 or float16")
        return dtype
    if dtype == "auto":
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'")


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", name) is not None and ".." not in name


HUB_PROBE_SECONDS = 3.0
"""How long :func:`hub_unreachable` waits for the Hub's address and a TCP connection."""


@functools.lru_cache(maxsize=8)
def hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the Hub at ``endpoint`` (a URL such as ``https://huggingface.co``) cannot be
    reached, in a few words, or ``None`` when a TCP connection to it opens within
    ``timeout`` seconds (or a proxy is configured: then huggingface_hub is left to try).

    Asked once per endpoint and process, before the first download, so that a machine
    without network fails at once instead of after huggingface_hub's five retries with
    back-off (about 25 s and two warnings per retry, per file).
    """
    url = urllib.parse.urlsplit(endpoint)
    host = url.hostname
    if not host:
        return f"{endpoint!r} is not a URL"
    if urllib.request.getproxies().get(url.scheme) and not urllib.request.proxy_bypass(host):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    found: list[object] = []

    def resolve() -> None:  # getaddrinfo has no timeout of its own
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    resolver = threading.Thread(target=resolve, name="wavlm-live-hub-probe", daemon=True)
    resolver.start()
    resolver.join(timeout)
    if not found:
        return f"no answer for the address of {host} within {timeout:g} s"
    if isinstance(found[0], OSError):
        return f"cannot resolve {host} ({found[0].strerror or found[0]})"
    last: OSError | None = None
    for family, kind, proto, _, address in found[0]:  # type: ignore[union-attr]
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return None
        except OSError as exc:
            last = exc
    detail = "timed out" if isinstance(last, TimeoutError) else (getattr(last, "strerror", None) or str(last))
    return f"cannot connect to {host}:{port} ({detail})"


def _fetch_from_hub(repo_id: str, revision: str | None, local_files_only: bool | None) -> Path:
    """Download (or find in the cache) the files a checkpoint needs; returns the snapshot
    folder. Honours ``HF_HUB_OFFLINE`` through huggingface_hub; when neither it nor
    ``local_files_only`` is set and :func:`hub_unreachable` finds no network, only the
    cache is used."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, HFValidationError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    not_cached: list[str] = []
    offline = ("(HF_HUB_OFFLINE is set, local_files_only is true, or the Hub is unreachable); pass a local "
               "folder that holds its config.json and weights instead")
    if local_files_only is None and not constants.HF_HUB_OFFLINE:
        reason = hub_unreachable(constants.ENDPOINT)
        if reason is not None:
            local_files_only = True
            offline = (f"(the Hugging Face Hub at {constants.ENDPOINT} cannot be reached: {reason}); pass a local "
                       "folder that holds its config.json and weights instead")

    def fetch(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision,
                                        local_files_only=bool(local_files_only)))
        except (LocalEntryNotFoundError, OfflineModeIsEnabled):  # before EntryNotFoundError, its base class
            if filename == "config.json":
                raise ModelLoadError(f"model {repo_id!r} is not in the local Hugging Face cache and cannot be "
                                     f"downloaded {offline}") from None
            not_cached.append(filename)
            return None  # not cached while offline: treated as absent
        except EntryNotFoundError:
            return None  # the repository has no such file
        except (RepositoryNotFoundError, GatedRepoError):
            raise ModelLoadError(f"model {repo_id!r} was not found on the Hugging Face Hub (or is private or "
                                 "gated); check the name or pass a local folder") from None
        except RevisionNotFoundError:
            raise ModelLoadError(f"revision {revision!r} of model {repo_id!r} does not exist on the "
                                 "Hugging Face Hub; check the revision") from None
        except HFValidationError as e:
            raise ModelLoadError(f"{repo_id!r} is neither an existing folder nor a valid Hugging Face Hub id "
                                 f"({e})") from None
        except (HfHubHTTPError, OSError) as e:
            raise ModelLoadError(f"downloading {filename} of model {repo_id!r} failed ({e}); check the "
                                 "connection or pass a local folder") from None

    config_path = fetch("config.json")
    if config_path is None:
        raise ModelLoadError(f"model {repo_id!r} on the Hugging Face Hub has no config.json; it is not a "
                             "transformers-format checkpoint")
    folder = config_path.parent
    if all(fetch(name) is None for name in WEIGHT_FILES) and not_cached:
        raise ModelLoadError(f"the weights of model {repo_id!r} are not in the local Hugging Face cache and "
                             f"cannot be downloaded {offline}")
    for name in _OPTIONAL_FILES:
        fetch(name)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError:
        config = None  # reported by load_pretrained when it parses config.json
    if isinstance(config, dict) and any(ARCHITECTURES.get(a, ("",))[0] == "ctc"
                                        for a in config.get("architectures") or []):
        for name in _VOCAB_FILES:
            fetch(name)
    return folder


def _resolve_folder(source: str, revision: str | None, local_files_only: bool | None) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ModelLoadError(f"model path {source!r} is a file; pass the checkpoint folder that holds "
                             "config.json and the weights")
    if not _looks_like_hub_id(source):
        raise ModelLoadError(f"model folder {source!r} does not exist; pass an existing checkpoint folder "
                             "or a Hugging Face Hub id such as 'microsoft/wavlm-base-plus-sd'")
    first = Path(source).parts[0]
    if "/" in source and Path(first).is_dir():
        # 'models/x' where ./models is a folder: a path that is not there, not a Hub id
        raise ModelLoadError(f"model folder {source!r} does not exist (./{first} is a folder here, so this is "
                             f"taken as a path, not as a Hugging Face Hub id); check the name, or run from "
                             "another folder to use the Hub id")
    try:
        return _fetch_from_hub(source, revision, local_files_only)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc} (and no local folder {source!r} exists)") from None


def _read_state_dict(path: Path, name: str) -> dict[str, Tensor]:
    """Read a safetensors or (``weights_only``) PyTorch state dict onto the CPU."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors / zip / unpickling errors have no common base class
        raise ModelLoadError(f"model {name!r}: {path.name} is truncated or corrupt ({type(e).__name__}: {e}); "
                             "delete it (or its cached copy) and download or export it again") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ModelLoadError(f"model {name!r}: {path.name} does not hold a state dict of tensors")
    return state


def _fold_weight_norm(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Replace the positional conv's weight-norm factors (g, v) by ``w = g * v / ||v||``,
    norm over dims (0, 1) for each kernel tap (``torch.nn.utils.weight_norm(dim=2)``);
    ``prefix`` is the family's key prefix ("wav2vec2.")."""
    pos = prefix + _POS_CONV
    for g_name, v_name in _WEIGHT_NORM_NAMES:
        g_key, v_key = pos + g_name, pos + v_name
        if g_key in state and v_key in state:
            g, v = state.pop(g_key).float(), state.pop(v_key).float()
            state[pos + "weight"] = v * (g / torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
    return state


def _list(keys, n: int = 6) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _load_weights(model: nn.Module, state: dict[str, Tensor], name: str, arch: str) -> None:
    """Check every key and shape against ``model`` and load; raises ModelLoadError listing
    missing, unexpected and mis-shaped keys."""
    prefix = model.config.model_type + "."
    state = _fold_weight_norm({k: v for k, v in state.items() if not _IGNORED.match(k)}, prefix)
    expected = model.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    misshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                 for k in sorted(expected.keys() & state.keys()) if state[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys: {_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list(unexpected)}")
        if misshaped:
            parts.append(f"mis-shaped keys (checkpoint vs config): {_list(misshaped, 4)}")
        raise ModelLoadError(f"model {name!r}: the weights do not match its config.json for {arch} ("
                             + "; ".join(parts) + "); use the config.json the weights were saved with")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                          strict=True, assign=True)


def load_pretrained(name_or_path: str | Path, *, device: str | torch.device = "cpu",
                    dtype: str | torch.dtype = "float32", revision: str | None = None,
                    local_files_only: bool | None = None, expected_task: str | None = None,
                    fast: bool = True, share: bool = True) -> Pretrained:
    """Load a WavLM, Wav2Vec2 (XLS-R) or HuBERT task checkpoint from a local folder or a
    Hugging Face Hub id (any architecture of :data:`ARCHITECTURES`).

    Args:
        name_or_path: a folder holding ``config.json`` and ``model.safetensors`` or
            ``pytorch_model.bin``, or a Hub id (files fetched and cached with huggingface_hub;
            ``HF_HUB_OFFLINE`` honoured).
        device: "cpu" (default), "cuda", "auto" or a ``torch.device`` (see :func:`resolve_device`).
        dtype: "float32" (default), "bfloat16", "float16", "auto" or a ``torch.dtype``
            (see :func:`resolve_dtype`).
        revision: Hub branch, tag or commit (Hub ids only).
        local_files_only: True to use only the Hub cache; None leaves it to huggingface_hub.
        expected_task: "ctc", "frames" or "xvector" to insist on that task.
        fast: True (default) to switch a model on the CPU in float32 or bfloat16 to the CPU
            fast path (:func:`~wavlm_live.model.fast.accelerate`: oneDNN fused kernels, same
            results up to float rounding); False for the reference PyTorch model of
            ``backbone.py`` / ``attention.py`` (on CUDA or in float16 it is always that).
        share: True (default) to share the feature encoder with any model loaded before
            whose encoder is identical (same weights, dtype, device and path), computed
            once per window (:mod:`~wavlm_live.model.shared`).

    Returns a :class:`Pretrained`. Raises :class:`ModelLoadError` (a ``ValueError``) for a
    missing folder or file, a model neither local nor cached while offline, unreadable or
    truncated weights, an unknown architecture, a bad config, weights that do not match the
    config (missing, unexpected or mis-shaped keys, listed), a task other than
    ``expected_task``, or an unavailable device.
    """
    source = str(name_or_path)
    if expected_task is not None and expected_task not in TASKS:
        raise ModelLoadError(f"expected_task {expected_task!r} is not one of {', '.join(TASKS)}")
    try:
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
    except ValueError as e:
        raise ModelLoadError(f"model {source!r}: {e}") from None
    folder = _resolve_folder(source, revision, local_files_only)

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"model {source!r}: {folder} has no config.json; pass a transformers-format "
                             "checkpoint folder")
    try:
        config = WavLMConfig.from_json(config_path)
    except (ValueError, TypeError, OSError) as e:
        raise ModelLoadError(f"model {source!r}: bad config.json ({e})") from None
    archs = [a for a in config.architectures if a in ARCHITECTURES]
    if len(archs) != 1:
        found = ", ".join(config.architectures) or "none"
        raise ModelLoadError(f"model {source!r}: unknown architecture ({found}) in config.json; supported: "
                             f"{', '.join(ARCHITECTURES)}")
    arch = archs[0]
    task, cls, family = ARCHITECTURES[arch]
    if config.model_type != family:
        raise ModelLoadError(f"model {source!r}: config field 'model_type' is {config.model_type!r}, but the "
                             f"architecture {arch} is a {FAMILIES[family]} model ({family!r}); fix config.json")
    if expected_task is not None and task != expected_task:
        raise ModelLoadError(f"model {source!r} is a {task!r} model ({arch}), but a {expected_task!r} model was "
                             "expected; pass a checkpoint for that task")

    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        sharded = any((folder / f"{n}.index.json").is_file() for n in WEIGHT_FILES)
        raise ModelLoadError(f"model {source!r}: {folder} has no model.safetensors or pytorch_model.bin"
                             + (" (sharded checkpoints are not supported; save it unsharded)" if sharded else
                                "; download or export the weights into it"))

    pre_path = folder / "preprocessor_config.json"
    try:
        preprocessor = PreprocessorConfig.from_json(pre_path) if pre_path.is_file() else PreprocessorConfig()
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"model {source!r}: bad preprocessor_config.json ({e})") from None
    if preprocessor.sampling_rate != SAMPLE_RATE:
        raise ModelLoadError(f"model {source!r} expects {preprocessor.sampling_rate} Hz audio; only 16000 Hz "
                             "WavLM checkpoints are supported")

    vocab = decoder = None
    if task == "ctc":
        if not (folder / "vocab.json").is_file():
            raise ModelLoadError(f"model {source!r}: CTC checkpoint without vocab.json in {folder}; add the "
                                 "tokenizer files (vocab.json, tokenizer_config.json)")
        try:
            vocab = CTCVocabulary.from_files(folder)
        except (ValueError, TypeError, OSError) as e:
            raise ModelLoadError(f"model {source!r}: bad tokenizer files ({e})") from None
        decoder = CTCDecoder(vocab, frame_seconds=config.hop / preprocessor.sampling_rate)

    # normal tensors even when called under torch.inference_mode(): inference tensors have no
    # version counter (the fast path's derived-weight cache in kernels.py needs it) and cannot
    # train later
    with torch.inference_mode(False):
        state = _read_state_dict(weights, source)
        try:
            with torch.device("meta"):
                model = cls(config)
        except ValueError as e:
            raise ModelLoadError(f"model {source!r}: {e}") from None
        _load_weights(model, state, source, arch)
        model.to(device=dev, dtype=dt).eval()
    if fast:
        accelerate(model)  # returns it unchanged off the CPU and in float16
    if share:
        share_feature_encoder(model)
    return Pretrained(model=model, config=config, preprocessor=preprocessor, vocab=vocab, decoder=decoder,
                      task=task, source=source, path=folder, device=dev, dtype=dt)


def architecture_name(model: nn.Module) -> str:
    """The ``config.json`` architecture of one of this package's task models, e.g.
    "Wav2Vec2ForXVector"; raises ``TypeError`` for any other module and ``ValueError`` for a
    head that transformers does not have in that family (HuBERT frames / x-vector)."""
    head = next((h for h, (_, cls) in _HEADS.items() if type(model) is cls), None)
    if head is None:
        raise TypeError(f"expected one of {', '.join(c.__name__ for _, c in _HEADS.values())}, got "
                        f"{type(model).__name__}")
    family = model.config.model_type
    if head not in _FAMILY_HEADS[family]:
        raise ValueError(f"transformers has no {ARCH_PREFIX[family]}{head}; a {FAMILIES[family]} model can only "
                         f"be saved as {', '.join(ARCH_PREFIX[family] + h for h in _FAMILY_HEADS[family])}")
    return ARCH_PREFIX[family] + head


def save_pretrained(model: nn.Module, folder: str | Path, *, preprocessor: PreprocessorConfig | None = None,
                    vocab: CTCVocabulary | None = None) -> Path:
    """Write a checkpoint folder that both :func:`load_pretrained` and transformers load.

    Writes ``config.json`` (with ``architectures``), ``model.safetensors`` (float32; the
    positional conv weight as ``parametrizations.weight.original0`` (g) / ``original1`` (v),
    the names transformers 5 uses), ``preprocessor_config.json`` (``preprocessor`` or the
    defaults) and, for CTC, the tokenizer files of ``vocab``. Creates ``folder``; returns it.

    The architecture written is the family's (``config.model_type``): ``Wav2Vec2ForCTC`` for a
    Wav2Vec2 CTC model, and so on.

    Raises ``TypeError`` for a model that is not one of the four task models and
    ``ValueError`` for a CTC model without ``vocab`` or a head transformers lacks in that
    family (HuBERT has only ``HubertForCTC``).
    """
    from safetensors.torch import save_file

    try:
        arch = architecture_name(model)
    except TypeError as e:
        raise TypeError(f"save_pretrained: {e}") from None
    task = ARCHITECTURES[arch][0]
    if task == "ctc" and vocab is None:
        raise ValueError(f"save_pretrained needs vocab= for a {arch} model")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(model.config, architectures=(arch,))

    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    pos = model.config.model_type + "." + _POS_CONV
    w = state.pop(pos + "weight")
    g_name, v_name = _WEIGHT_NORM_NAMES[1]
    state[pos + g_name] = torch.linalg.vector_norm(w, dim=(0, 1), keepdim=True)
    state[pos + v_name] = w
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    pre = (preprocessor or PreprocessorConfig()).to_dict()
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
    if task == "ctc":
        vocab.to_files(folder)
    return folder
