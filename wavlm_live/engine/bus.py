"""Thread-safe fan-out of engine events to subscribers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from wavlm_live.events import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers every published event to every subscriber, in publish order.

    ``publish`` calls each subscriber synchronously in the publishing thread (the engine
    thread), so subscribers must return quickly and never block: a websocket server hands
    the event to its asyncio loop with ``loop.call_soon_threadsafe``, a file writer
    appends a line. A subscriber that raises is logged and unsubscribed; it never stops
    the engine or the other subscribers.

    Thread safety: ``subscribe``, ``unsubscribe`` and ``publish`` may be called from any
    thread; publishes from several threads are serialised.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register ``callback(event)``; returns a function that unsubscribes it."""
        with self._lock:
            self._subscribers = self._subscribers + (callback,)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Remove ``callback``; a no-op when it is not subscribed."""
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not callback)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to all current subscribers (see class docstring)."""
        with self._publish_lock:
            for callback in self._subscribers:
                try:
                    callback(event)
                except Exception:  # noqa: BLE001 - a broken sink must not stop the engine
                    log.exception("event subscriber %r failed; unsubscribing it", callback)
                    self.unsubscribe(callback)
