"""Operators of the dashboard: password hashing, roles and permissions, accounts, sessions and the audit log."""
