"""The gateway's persistence layer: SQLAlchemy Core tables, engines and transactions, migrations, repositories.

- :mod:`gateway.store.tables`: the schema (one `MetaData`, named constraints).
- :mod:`gateway.store.db`: engines for SQLite and PostgreSQL, :func:`~gateway.store.db.transaction`.
- :mod:`gateway.store.migrate`: Alembic migrations run from code (`tgw init`, `tgw run`).
- :mod:`gateway.store.repo`: small repository functions taking a connection; the caller owns the transaction.
- :mod:`gateway.store.errors`: the store's exceptions.
"""
