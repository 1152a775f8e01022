"""Schema migrations run from code: `upgrade()` on `tgw init` and `tgw run`, no alembic.ini at run time.

The Alembic scripts live inside the package (`gateway/store/migrations/`, installed as package data), and the
Alembic `Config` is built here with `script_location` pointing at them. The whole upgrade runs in one
transaction on the connection this module opens (see `migrations/env.py`): it applies completely or not at all.

On PostgreSQL the upgrade first takes a transaction-level advisory lock (:data:`MIGRATION_LOCK_KEY`): several
gateway nodes starting together on one database migrate one after the other, and the later ones find the schema
already at head. On SQLite the migration's `BEGIN IMMEDIATE` serializes them the same way.

On SQLite, foreign keys are switched off for the duration of the upgrade and checked before the commit
(`PRAGMA foreign_key_check`), the procedure SQLite documents for schema changes: a batch migration recreates a
table by copy-drop-rename, and with enforcement on, dropping a referenced table would fail or cascade.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, text

from gateway.store.db import create_engine_for, is_sqlite, transaction, unavailable_on_failure
from gateway.store.errors import StoreError

#: Where the migration scripts are, inside the installed package.
MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
#: PostgreSQL advisory lock held for the duration of a migration ("tgw_mig" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x7467775F6D6967


class MigrationFailed(StoreError):
    """A migration left the database inconsistent (on SQLite: foreign keys that point nowhere); rolled back."""


def alembic_config() -> Config:
    """An Alembic configuration built in code, pointing at the package's migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision the code knows (the one :func:`upgrade` goes to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships at least the initial revision
        raise MigrationFailed(f"no migration scripts in {MIGRATIONS_DIR}")
    return head


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> str | None:
    """Bring the database's schema up to `revision` (the newest by default), in one transaction.

    Args:
        url_or_engine: a database URL (an engine is made with
            :func:`~gateway.store.db.create_engine_for` and disposed of afterwards) or an engine to use.
        revision: an Alembic revision identifier; "head" for the newest.

    Returns:
        The revision the database is at afterwards.

    Raises:
        StoreUnavailable: the database could not be reached or stayed locked.
        MigrationFailed: on SQLite, the migrated data breaks a foreign key (nothing was changed).
    """
    with _engine(url_or_engine) as engine:
        with _migration_connection(engine) as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        return current_revision(engine)


def downgrade(url_or_engine: str | URL | Engine, revision: str) -> str | None:
    """Take the schema back to `revision` ("base" for an empty database), in one transaction.

    For operators and tests; the gateway itself only ever upgrades. Raises as :func:`upgrade` does.
    """
    with _engine(url_or_engine) as engine:
        with _migration_connection(engine) as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
        return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database that was never migrated.

    Raises:
        StoreUnavailable: the database could not be reached.
    """
    with transaction(engine, read_only=True) as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _engine(url_or_engine: str | URL | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = create_engine_for(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction for the migration; on SQLite with foreign keys off until it ends."""
    with unavailable_on_failure(), engine.connect() as conn:
        if not is_sqlite(conn):
            with conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield conn
            return
        # PRAGMA foreign_keys is a no-op inside a transaction: set it on the raw connection before BEGIN.
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise MigrationFailed(f"foreign keys broken by the migration: {broken[:10]}")
        finally:
            raw.execute("PRAGMA foreign_keys = ON")
