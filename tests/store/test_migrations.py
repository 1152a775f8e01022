"""Migrations: from an empty database to head on both backends, and the result is exactly `tables.metadata`."""

from __future__ import annotations

import queue
import threading
import time

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from gateway.store.db import create_engine_for, transaction
from gateway.store.migrate import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from gateway.store.tables import ALL_TABLES, metadata
from tests.conftest_db import PgServer

TABLE_NAMES = {table.name for table in ALL_TABLES}


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        diffs: list[object] = compare_metadata(MigrationContext.configure(conn), metadata)
        conn.rollback()
    return diffs


def test_upgrade_from_empty_to_head_matches_the_metadata(empty_db_url: str) -> None:
    """An empty database is migrated to head, and autogenerate finds nothing left to change."""
    engine = create_engine_for(empty_db_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(empty_db_url) == head_revision()
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLE_NAMES
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(empty_db_url: str) -> None:
    """`tgw run` upgrades on every start: a second upgrade changes nothing."""
    engine = create_engine_for(empty_db_url)
    try:
        upgrade(engine)
        assert upgrade(engine) == head_revision()
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(empty_db_url: str) -> None:
    """The initial revision can be taken back (nothing of ours is left) and applied again."""
    engine = create_engine_for(empty_db_url)
    try:
        upgrade(engine)
        assert downgrade(engine, "base") is None
        assert set(inspect(engine).get_table_names()) & TABLE_NAMES == set()
        upgrade(engine)
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()


def test_the_session_database_is_at_head(db_engine: Engine) -> None:
    """The fixtures' databases were migrated with upgrade(), to the newest revision."""
    assert current_revision(db_engine) == head_revision()
    assert _schema_differences(db_engine) == []


def test_migration_scripts_ship_inside_the_package() -> None:
    """`upgrade()` needs no alembic.ini: env.py, the template and the revisions are package files."""
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1, f"the revisions must form one chain, not {scripts.get_heads()}"
    assert head_revision() == scripts.get_current_head()


def test_nodes_starting_together_migrate_one_after_the_other(pg_server: PgServer) -> None:
    """PostgreSQL: two upgrades of one empty database wait for the migration lock (seen in pg_locks), then
    both succeed, the second finding the schema already at head."""
    name = pg_server.create_database()
    url = pg_server.url_for(name)
    engine = create_engine_for(url)
    results: queue.Queue[object] = queue.Queue()

    def start_node() -> None:
        try:
            results.put(upgrade(url))
        except Exception as exc:  # reported below, with the other node's result
            results.put(exc)

    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    nodes = [threading.Thread(target=start_node, daemon=True) for _ in range(2)]
    try:
        with transaction(engine) as holder:
            holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            for node in nodes:
                node.start()
            deadline = time.monotonic() + 30
            with transaction(engine, read_only=True) as probe:
                while probe.execute(waiting).scalar_one() < 2:
                    assert time.monotonic() < deadline, "the upgrades did not wait for the migration lock"
        for node in nodes:
            node.join(30)
            assert not node.is_alive()
        assert [results.get_nowait(), results.get_nowait()] == [head_revision(), head_revision()]
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()
        pg_server.drop_database(name)
