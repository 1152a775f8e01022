"""Tests of the store (gateway/store/), on SQLite and PostgreSQL."""
