"""One Twisted reactor for the whole test session, running in a background thread.

Twisted's global reactor cannot be restarted once stopped, so every test that needs a real reactor (end-to-end
tests over TLS, browser tests) shares this one: the `reactor_thread` fixture starts it on first use and the
session's end stops it. Tests drive it with :func:`call` (``blockingCallFromThread``): the reactor never runs
on the test thread, and the test thread never sleeps; it waits on Deferreds with a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet import threads

reactor: Any = _reactor
WAIT_S = 60.0
_thread: threading.Thread | None = None


def start() -> None:
    """Start the shared reactor thread if it is not running yet."""
    global _thread
    if _thread is not None:
        return
    started = threading.Event()
    reactor.callWhenRunning(started.set)
    _thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True, name="reactor")
    _thread.start()
    if not started.wait(WAIT_S):
        raise RuntimeError("the Twisted reactor did not start")


def stop() -> None:
    """Stop the shared reactor at the end of the session (it cannot be started again)."""
    if _thread is not None and reactor.running:
        reactor.callFromThread(reactor.stop)
        _thread.join(WAIT_S)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` on the reactor thread and wait for its (possibly Deferred) result."""
    return threads.blockingCallFromThread(reactor, fn, *args, **kwargs)


@pytest.fixture(scope="session")
def reactor_thread() -> Iterator[Any]:
    """The running global reactor (started on first use, stopped when the session ends)."""
    start()
    yield reactor
