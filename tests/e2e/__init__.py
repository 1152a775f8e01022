"""End-to-end tests: the real gateway and banks over mutual TLS on loopback, on SQLite and PostgreSQL."""
