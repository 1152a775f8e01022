"""The hub runs a transaction that PostgreSQL made a deadlock victim again, like one that lost an optimistic race."""

from __future__ import annotations

from twisted.python.failure import Failure

from gateway.hub import Hub
from gateway.store.db import StoreUnavailable
from gateway.store.errors import TransientConflict


def test_the_hub_runs_a_deadlock_victim_again(hub: Hub) -> None:
    """`Hub.run_retrying` runs a transaction that lost a deadlock again, with the same arguments, and gives up with
    StoreUnavailable (answered 91099) only after its attempts."""
    calls: list[int] = []

    def victim_then_ok(conn: object, value: int, now: object) -> int:
        calls.append(value)
        if len(calls) == 1:
            raise TransientConflict("deadlock detected")
        return value * 2

    d = hub.run_retrying(victim_then_ok, 21)
    assert d.result == 42 and calls == [21, 21]

    def always(conn: object, now: object) -> None:
        calls.append(0)
        raise TransientConflict("deadlock detected")

    failed = hub.run_retrying(always, attempts=2)
    failure = failed.result
    failed.addErrback(lambda _: None)
    assert isinstance(failure, Failure) and isinstance(failure.value, StoreUnavailable)
    assert "gave up after 2" in str(failure.value) and len(calls) == 2 + 2
