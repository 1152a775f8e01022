"""Tests of official-card repayment (gateway/cards/, issue 5), on SQLite and PostgreSQL."""
