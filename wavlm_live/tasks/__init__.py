"""The engine's tasks, one module each, behind the interface of :mod:`.base`.

``REGISTRY`` lists them in the order their streams apply a window (captions first, so
that its preview partial goes out before the slower tasks run); ``make_tasks`` wraps
loaded runners into shared :class:`~wavlm_live.tasks.base.Task` objects.
"""

from __future__ import annotations

from typing import Any

from .base import Cut, StreamContext, Task, TaskStream, Work
from .captions import CaptionsTask
from .classification import ClassificationTask
from .diarization import DiarizationTask
from .embeddings import EmbeddingsTask

REGISTRY: dict[str, type[Task]] = {
    CaptionsTask.name: CaptionsTask,
    DiarizationTask.name: DiarizationTask,
    EmbeddingsTask.name: EmbeddingsTask,
    ClassificationTask.name: ClassificationTask,
}
"""Task name -> class, in apply order."""

def task_for(name: str, runner: Any) -> Task:
    """The shared :class:`Task` of ``runner`` for task ``name``: one per runner (kept on
    the runner), so that every stream using the runner batches through the same task.

    Raises:
        KeyError: unknown task name.
    """
    tasks = runner.__dict__.setdefault("_wavlm_live_tasks", {})
    if name not in tasks:
        tasks[name] = REGISTRY[name](runner)
    return tasks[name]


__all__ = ["REGISTRY", "Cut", "StreamContext", "Task", "TaskStream", "Work", "task_for"]
