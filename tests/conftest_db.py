"""Database fixtures for the whole suite (a pytest plugin): every store test runs on SQLite and on PostgreSQL.

Load it from `tests/conftest.py` with ``pytest_plugins = ["tests.conftest_db"]``.

- `db_backend`: "sqlite" or "postgresql"; the one parametrized fixture (a test that uses `db_url` and
  `db_engine` together still runs once per backend).
- `db_url`: a migrated database with empty tables. SQLite: a copy of a file migrated once per session, in the
  test's `tmp_path`. PostgreSQL: one database `tgw_test_<random hex>` created on 127.0.0.1:5432 (user
  `postgres`) and migrated with :func:`gateway.store.migrate.upgrade` once per session, emptied before each test
  with `TRUNCATE … RESTART IDENTITY CASCADE`, dropped at the end of the session.
- `db_engine`: an engine from :func:`gateway.store.db.create_engine_for` on `db_url`.
- `empty_db_url`: a database that was never migrated (for the migration tests); a fresh one per test.
- `sqlite_db_url`, `pg_db_engine`: the same databases for tests that concern one backend only.

PostgreSQL is not optional: if the server cannot be reached, the PostgreSQL half of every test using these
fixtures errors with a message saying so (it is never skipped). `TGW_TEST_PG_ADMIN_URL` may point at another
server, on a loopback address only.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy import URL, Engine, make_url, text

from gateway.store.db import create_engine_for, sqlite_url_for, transaction
from gateway.store.errors import StoreUnavailable
from gateway.store.migrate import upgrade
from gateway.store.tables import ALL_TABLES

PG_ADMIN_URL: Final = os.environ.get("TGW_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_DATABASE_PREFIX: Final = "tgw_test_"
BACKENDS: Final = ("sqlite", "postgresql")
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class PgServer:
    """The PostgreSQL server the tests use, reached through its maintenance database as a superuser."""

    admin_url: URL
    admin: Engine

    def url_for(self, database: str) -> str:
        """The URL of one of the test databases on this server."""
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def create_database(self) -> str:
        """Create an empty database `tgw_test_<random hex>` and return its name."""
        name = f"{PG_DATABASE_PREFIX}{secrets.token_hex(6)}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database, closing whatever is still connected to it."""
        assert name.startswith(PG_DATABASE_PREFIX), name
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL server; fails (never skips) with a clear message when it cannot be reached."""
    admin_url = make_url(PG_ADMIN_URL)
    if admin_url.host not in _LOOPBACK:
        pytest.fail(f"TGW_TEST_PG_ADMIN_URL must name a loopback host, not {admin_url.host!r}", pytrace=False)
    admin = create_engine_for(admin_url, pool_size=1, connect_timeout_s=3).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    problem = None
    try:
        with transaction(admin) as conn:
            conn.execute(text("SELECT 1"))
    except StoreUnavailable as exc:
        problem = str(exc)
    if problem is not None:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is required by the store tests and is unreachable at "
            f"{admin_url.render_as_string(hide_password=True)} ({problem.strip()}). The suite runs on SQLite and "
            f"PostgreSQL: start PostgreSQL on 127.0.0.1:5432 (user postgres) or set TGW_TEST_PG_ADMIN_URL.",
            pytrace=False,
        )
    try:
        yield PgServer(admin_url, admin)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url(pg_server: PgServer) -> Iterator[str]:
    """One migrated PostgreSQL database for the session, dropped at its end."""
    name = pg_server.create_database()
    try:
        url = pg_server.url_for(name)
        upgrade(url)
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    """The session's engine on the migrated PostgreSQL database."""
    engine = create_engine_for(pg_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database file migrated once per session; each test works on a copy."""
    directory = tmp_path_factory.mktemp("sqlite-template")
    engine = create_engine_for(sqlite_url_for(directory))
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # closing the last connection checkpoints the WAL into the main file
    path = directory / "gateway.db"
    assert not path.with_name("gateway.db-wal").exists(), "the template must be one self-contained file"
    return path


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "sqlite" or "postgresql"."""
    backend: str = request.param
    return backend


def _truncate_all(engine: Engine) -> None:
    names = ", ".join(table.name for table in ALL_TABLES)
    with transaction(engine) as conn:
        conn.exec_driver_sql(f"TRUNCATE TABLE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
def sqlite_db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database with empty tables (for SQLite-only tests)."""
    shutil.copyfile(sqlite_template, tmp_path / "gateway.db")
    return sqlite_url_for(tmp_path)


@pytest.fixture
def pg_db_engine(pg_engine: Engine) -> Engine:
    """The session's PostgreSQL engine with empty tables (for PostgreSQL-only tests)."""
    _truncate_all(pg_engine)
    return pg_engine


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database with empty tables, on the backend under test."""
    if db_backend == "sqlite":
        sqlite_url: str = request.getfixturevalue("sqlite_db_url")
        return sqlite_url
    request.getfixturevalue("pg_db_engine")
    pg_url: str = request.getfixturevalue("pg_database_url")
    return pg_url


@pytest.fixture
def db_engine(db_backend: str, db_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on a migrated database with empty tables, on the backend under test."""
    if db_backend == "postgresql":
        shared: Engine = request.getfixturevalue("pg_db_engine")
        yield shared
        return
    engine = create_engine_for(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def empty_db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database that has never been migrated, on the backend under test; dropped afterwards."""
    if db_backend == "sqlite":
        directory = tmp_path / "empty"
        directory.mkdir()
        yield sqlite_url_for(directory)
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create_database()
    try:
        yield server.url_for(name)
    finally:
        server.drop_database(name)
