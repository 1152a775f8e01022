"""Fixtures of the end-to-end tests (see `tests/e2e/harness.py` for what each piece does).

- `reactor_driver` (session): the suite's shared reactor thread (`reactor_thread`, `tests/reactor_thread.py`)
  with calls and waits that time out and say what they waited for (:class:`~tests.e2e.harness.ReactorDriver`).
- `instance`: a fresh instance from the real `tgw init` in `tmp_path`, parametrized over `sqlite` and
  `postgresql` (a database `tgw_test_<hex>` of its own on 127.0.0.1:5432, created before `tgw init` and dropped
  afterwards, see :class:`PgDatabases`; PostgreSQL unreachable is an error, never a skip).
  `@pytest.mark.banks("ICBC", "CCB")` configures other banks (ICBC alone by default).
- `e2e`: the test's :class:`~tests.e2e.harness.E2E` on that instance (start the gateway, banks, raw clients;
  submit, read, wait); everything it started is stopped at teardown, before the database is dropped.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.store.migrate import upgrade
from tests.conftest_db import BACKENDS, PG_DATABASE_PREFIX, PgServer
from tests.e2e.harness import E2E, Instance, ReactorDriver


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "banks(*codes): the banks an end-to-end instance is created with")


class PgDatabases:
    """Per-test PostgreSQL databases, made quickly and dropped in the background.

    Each test's database is created with `CREATE DATABASE … TEMPLATE` from one database migrated once per
    session (copying a template is several times faster than migrating each time; `tgw init` still runs the
    migrations, and finds them applied). Drops run on a thread of their own while the next tests run; the
    session waits for them at its end, and a failed drop fails the session's teardown.
    """

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.template = server.create_database()
        upgrade(server.url_for(self.template))
        self._drops = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-drop")
        self._pending: list[Future[None]] = []

    def create(self) -> str:
        name = f"{PG_DATABASE_PREFIX}{secrets.token_hex(6)}"
        with self.server.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop_later(self, name: str) -> None:
        self._pending.append(self._drops.submit(self.server.drop_database, name))

    def close(self) -> None:
        self._drops.shutdown(wait=True)
        self.server.drop_database(self.template)
        for future in self._pending:
            future.result()  # raises what a drop raised


@pytest.fixture(scope="session")
def pg_databases(pg_server: PgServer) -> Iterator[PgDatabases]:
    """Creates and drops the end-to-end tests' PostgreSQL databases (PostgreSQL unreachable fails, never skips)."""
    databases = PgDatabases(pg_server)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture(params=BACKENDS)
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    """A new instance made by `tgw init` on the backend under test."""
    backend: str = request.param
    marker = request.node.get_closest_marker("banks")
    banks = tuple(marker.args) if marker is not None else ("ICBC",)
    if backend == "sqlite":
        yield Instance.create(tmp_path / "instance", backend=backend, banks=banks)
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    name = databases.create()
    try:
        yield Instance.create(
            tmp_path / "instance", backend=backend, banks=banks, database_url=databases.server.url_for(name)
        )
    finally:
        databases.drop_later(name)


@pytest.fixture(scope="session")
def reactor_driver(reactor_thread: Any) -> ReactorDriver:
    """The shared running reactor, driven from the test thread with timeouts."""
    return ReactorDriver(reactor_thread)


@pytest.fixture
def e2e(reactor_driver: ReactorDriver, instance: Instance) -> Iterator[E2E]:
    """The test's world on a fresh instance; stopped at teardown (gateway, banks, clients)."""
    world = E2E(reactor_driver, instance)
    try:
        yield world
    finally:
        world.close()
