"""One analysis thread for many streams: due windows collected, each model run once per batch.

A :class:`Scheduler` serves any number of :class:`~wavlm_live.engine.engine.Engine`
streams (sessions) that share their task models. Every cycle it takes at most one due
window from each stream (:meth:`Engine.take`: a live stream that fell behind skips its
oldest due windows there, so no stream waits for another's backlog), runs every shared
model once over the windows that need it (:func:`analyse`: windows of equal length are
stacked without padding, others run in their own groups), and hands each stream its own
outputs, split back by index. Nothing crosses streams but the batched tensors (the dynamic
batching of Triton's batcher and Ray Serve's ``@serve.batch``; see docs/engine.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from wavlm_live.tasks.base import Task, Work

if TYPE_CHECKING:
    from wavlm_live.engine.engine import Engine

log = logging.getLogger(__name__)

STALL_SECONDS = 5.0
"""A batch running longer than this makes :meth:`Scheduler.health` say ``"stalled"``."""


def _run(task: Task, requests: list[Any]) -> list[Any]:
    """``task.run`` over the requests of several streams; if the batch raises, each
    request alone, so that one bad window fails only its own stream's window (returned
    as the exception in its place)."""
    try:
        return task.run(requests)
    except Exception as exc:  # noqa: BLE001 - retried one by one below to find the culprit
        if len(requests) == 1:
            return [exc]
    out: list[Any] = []
    for request in requests:
        try:
            out.append(task.run([request])[0])
        except Exception as exc:  # noqa: BLE001 - reported for that window only
            out.append(exc)
    return out


def analyse(items: list[tuple[Engine, Work]]) -> float:
    """Run the shared task models over the works of several streams and stitch each
    stream's outputs into events (:meth:`Engine.apply`; a final work also completes its
    stream). Returns the compute seconds the batch took.

    Stage by stage (:attr:`Task.stage`), every stream's task streams turn their window
    into requests; each shared task then runs once over all of them, and a task marked
    :attr:`~wavlm_live.tasks.base.Task.early` (captions) has its events published at once,
    before the slower tasks run. A model (or request) error fails only the windows it
    concerns (``model`` error events); an error while stitching ends that stream
    (:meth:`Engine.fail`). Called from one thread per
    set of streams.
    """
    t0 = time.perf_counter()
    failed: dict[int, BaseException] = {}
    dead: set[int] = set()  # works whose stream failed while stitching
    live = [(e, w) for e, w in items if w.window is not None and w.audio is not None]
    owners = {id(w): e for e, w in live}
    stages = sorted({stream.task.stage for engine, _ in live for stream in engine.streams})
    for stage in stages:
        groups: dict[int, list[tuple[Work, str, Any]]] = defaultdict(list)
        tasks: dict[int, Task] = {}
        for engine, work in live:
            for stream in engine.streams:
                if stream.task.stage != stage or id(work) in failed:
                    continue
                try:
                    request = stream.request(work)
                except Exception as exc:  # noqa: BLE001 - this window fails, the stream goes on
                    failed[id(work)] = exc
                    continue
                if request is None:
                    continue
                work.requests[stream.task.name] = request
                groups[id(stream.task)].append((work, stream.task.name, request))
                tasks[id(stream.task)] = stream.task
        for key, group in groups.items():
            results = _run(tasks[key], [request for _, _, request in group])
            for (work, name, _), result in zip(group, results):
                if isinstance(result, BaseException):
                    failed[id(work)] = result
                    continue
                try:
                    work.outputs[name] = owners[id(work)].context.streams[name].receive(work, result)
                except Exception as exc:  # noqa: BLE001 - this window fails, the stream goes on
                    failed[id(work)] = exc
            if tasks[key].early:
                # publish this task's events (the captions' preview partial) before the
                # slower tasks of the batch run
                for (work, name, _) in group:
                    engine = owners[id(work)]
                    if id(work) not in failed:
                        try:
                            engine.apply_task(work, name)
                        except Exception as exc:  # noqa: BLE001 - that stream cannot go on
                            failed[id(work)] = exc
                            dead.add(id(work))
    seconds = time.perf_counter() - t0
    for engine, work in items:
        if id(work) in dead:
            engine.fail(failed[id(work)])
            continue
        try:
            if id(work) in failed:
                engine.fail_window(work, failed[id(work)])
            elif work.window is not None and work.audio is not None:
                engine.apply(work, seconds)
            if work.final:
                engine.complete()
        except Exception as exc:  # noqa: BLE001 - this stream cannot go on; the others can
            engine.fail(exc)
    return seconds


class Scheduler:
    """Analyses the windows of every added stream in one thread, batching across streams.

    Args:
        name: the thread's name.
        batch_wait: seconds an idle scheduler waits after the first new audio before it
            collects, so that windows of streams fed at nearly the same moment share a
            batch (the max queue delay of Triton's dynamic batcher); a busy scheduler never
            waits, since windows gather while it computes.

    Batch sizes are the runners' own limit (``max_batch``, :mod:`wavlm_live.engine.tasks`).

    Thread safety: :meth:`add` and :meth:`stop` from any thread; the streams' producers
    feed their engines from their own threads (each feed wakes the scheduler).
    """

    def __init__(self, name: str = "wavlm-live-scheduler", batch_wait: float = 0.005) -> None:
        self._engines: list[Engine] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._dirty = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.batch_wait = batch_wait
        self.cycles = 0
        """Batches run so far."""
        self.windows = 0
        """Windows (of all streams) analysed so far: ``windows / cycles`` is the mean batch."""
        self.busy_seconds = 0.0
        """Compute seconds spent in batches so far."""
        self.error: BaseException | None = None
        self.busy_since: float | None = None
        """``time.monotonic()`` when the batch now running started, ``None`` between batches."""

    def health(self, stall_seconds: float = STALL_SECONDS, now: float | None = None) -> str:
        """``"failed"`` (the thread died of an error, or ended without being stopped),
        ``"stalled"`` (one batch has run for more than ``stall_seconds``: every stream
        it serves waits), else ``"running"``. Any thread may ask."""
        if self.error is not None or (self._thread.ident is not None and not self._thread.is_alive()
                                      and not self._stopping):
            return "failed"
        since = self.busy_since
        now = time.monotonic() if now is None else now
        if since is not None and now - since > stall_seconds:
            return "stalled"
        return "running"

    def add(self, engine: Engine) -> None:
        """Serve ``engine`` from now on (until its stream has completed or it is aborted).

        Raises:
            RuntimeError: the engine already belongs to a scheduler, or this one stopped.
        """
        with self._cond:
            if self._stopping:
                raise RuntimeError("scheduler stopped")
            engine.attach(self, self._notify)
            self._engines.append(engine)
            self._dirty = True
            self._cond.notify()

    @property
    def engines(self) -> list[Engine]:
        """The streams being served now (a copy)."""
        with self._lock:
            return list(self._engines)

    def start(self) -> None:
        """Start the analysis thread."""
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop after the current batch (streams not yet complete stay unfinished) and
        wait up to ``timeout`` seconds for the thread. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _notify(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def _collect(self) -> list[tuple[Engine, Work]]:
        """One due work from every stream; drops streams that are done."""
        items = []
        with self._lock:
            engines = list(self._engines)
        done = []
        for engine in engines:
            if engine.aborted:
                done.append(engine)
                engine.finished.set()
                continue
            try:
                work = engine.take()
            except Exception as exc:  # noqa: BLE001 - that stream ends, the others go on
                engine.fail(exc)
                done.append(engine)
                continue
            if work is not None:
                items.append((engine, work))
                if work.final:
                    done.append(engine)
        if done:
            with self._lock:
                self._engines = [e for e in self._engines if e not in done]
        return items

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait_for(lambda: self._dirty or self._stopping, timeout=0.1)
                    if self._stopping:
                        return
                    self._dirty = False
                if self.batch_wait > 0:
                    time.sleep(self.batch_wait)
                while items := self._collect():
                    self.busy_since = time.monotonic()
                    try:
                        self.busy_seconds += analyse(items)
                    finally:
                        self.busy_since = None
                    self.cycles += 1
                    self.windows += len(items)
                    if self._stopping:
                        return
        except BaseException as exc:  # noqa: BLE001 - reported to every stream, never silent
            self.error = exc
            log.error("scheduler failed: %s", exc)
            log.debug("scheduler failure", exc_info=exc)
            for engine in self.engines:
                if not engine.finished.is_set():
                    engine.fail(exc)
