"""The analysis options of every command, read from the command line once into one frozen,
typed object (:class:`AnalysisOptions`), so model loading and engine assembly never reach
into an ``argparse.Namespace``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any

from .defaults import DEFAULT_MODELS

TASK_OPTIONS = {"captions": "ctc_model", "diarization": "diarization_model", "embeddings": "embedding_model",
                "classification": "classification_model"}
"""The model option of each task (``--ctc-model`` ... ``--classification-model``)."""


@dataclass(frozen=True)
class AnalysisOptions:
    """Models and analysis settings, as given on the command line (or to the Python API).

    Attributes:
        models: checkpoint (Hub id or folder) per task the user named or that has a public
            default; the classification task runs only when its model is named.
        disabled: tasks switched off (``--no-captions`` ...).
        compute: ``"auto"``, ``"cpu"`` or ``"cuda"``. dtype: ``"auto"``, ``"float32"``,
            ``"bfloat16"`` or ``"float16"``. threads: CPU threads for torch, or ``None``.
        lm: ``--lm`` path, or ``None`` (the captions checkpoint's ``language_model/``).
        no_lm: greedy decoding even when a language model is available.
        window, hop: seconds, or ``None`` for the defaults: one schedule for every task
            (given, they replace the per-task defaults too).
        captions_window, captions_hop, diarization_window, diarization_hop: one task's
            own window and hop in seconds (``None``: that task's default, see
            :func:`wavlm_live.cli.app.engine_config`).
        embedding_interval: seconds of solo speech between x-vector passes (0: every
            diarization window), or ``None`` for the default.
        vad: gate the models with the speech detector (``--no-vad`` turns it off).
        speaker_threshold: cosine, or ``None`` (the model's; the demo's for demo models).
        max_speakers: a cap, or ``None``.
        enroll: ``NAME=FILE`` items as given (checked by ``app.enrolments``).
        classify: ``"auto"``, ``"turns"``, ``"windows"`` or ``None``. top_k: or ``None``.
        max_sessions, session_buffer: client sessions at once; seconds of audio one may
            hold (``serve``/``run``).
    """

    models: dict[str, str]
    disabled: frozenset[str] = frozenset()
    compute: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    lm: str | None = None
    no_lm: bool = False
    window: float | None = None
    hop: float | None = None
    captions_window: float | None = None
    captions_hop: float | None = None
    diarization_window: float | None = None
    diarization_hop: float | None = None
    embedding_interval: float | None = None
    vad: bool = True
    speaker_threshold: float | None = None
    max_speakers: int | None = None
    enroll: tuple[str, ...] = ()
    classify: str | None = None
    top_k: int | None = None
    max_sessions: int = 16
    session_buffer: float = 30.0

    @classmethod
    def of(cls, args: argparse.Namespace | AnalysisOptions) -> AnalysisOptions:
        """The options of a parsed command line (any subcommand: an option it lacks takes
        its default), or ``args`` itself when it is one already."""
        if isinstance(args, AnalysisOptions):
            return args
        models = {task: DEFAULT_MODELS[task] for task in ("captions", "diarization", "embeddings")}
        for task, option in TASK_OPTIONS.items():
            if getattr(args, option, None):
                models[task] = getattr(args, option)
        disabled = frozenset(task for task in TASK_OPTIONS if getattr(args, f"no_{task}", False))
        given: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("models", "disabled", "vad", "enroll"):
                continue
            value = getattr(args, f.name, None)
            if value is not None:
                given[f.name] = value
        return cls(models=models, disabled=disabled, vad=not getattr(args, "no_vad", False),
                   enroll=tuple(getattr(args, "enroll", None) or ()), **given)

    def enabled(self, task: str) -> bool:
        """True when ``task`` is not switched off."""
        return task not in self.disabled
