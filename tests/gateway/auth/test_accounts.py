"""Accounts, sessions (expiry, idleness, revocation) and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from gateway.auth import accounts
from gateway.auth.accounts import AccountError
from gateway.auth.passwords import ScryptParams, hash_password
from gateway.auth.roles import Role
from gateway.store.db import transaction
from gateway.store.tables import operator_sessions

T0 = datetime(2026, 11, 24, 1, 0, 0)
FAST = ScryptParams(n=2**10, r=8, p=1)


def _add(engine: Engine, username: str = "alice", role: str = "operator") -> accounts.Operator:
    with transaction(engine) as conn:
        return accounts.create_operator(conn, username, "Alice 李", role, hash_password("alice's password", FAST), T0)


def test_create_and_list(db_engine: Engine) -> None:
    op = _add(db_engine)
    assert (op.username, op.role, op.disabled, op.actor) == ("alice", Role.OPERATOR, False, "operator:alice")
    _add(db_engine, "bob", "viewer")
    with transaction(db_engine) as conn:
        assert [o.username for o in accounts.list_operators(conn)] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("username", "role"), [("Alice", "viewer"), ("a", "viewer"), ("al ice", "viewer"), ("carol", "root")]
)
def test_bad_usernames_and_roles_are_refused(db_engine: Engine, username: str, role: str) -> None:
    with transaction(db_engine) as conn, pytest.raises(AccountError):
        accounts.create_operator(conn, username, "", role, "scrypt$x", T0)


def test_usernames_are_unique(db_engine: Engine) -> None:
    _add(db_engine)
    with pytest.raises(AccountError, match="exists"):
        _add(db_engine)


def test_session_round_trip_stores_only_a_digest(db_engine: Engine) -> None:
    op = _add(db_engine)
    with transaction(db_engine) as conn:
        token, info = accounts.create_session(conn, op.id, T0, "127.0.0.1", "test")
    assert info.operator.username == "alice" and len(info.csrf_token) >= 40
    with transaction(db_engine) as conn:
        stored = conn.execute(select(operator_sessions.c.token_sha256)).scalars().all()
        assert stored == [accounts.token_digest(token)] and token not in stored
        found = accounts.lookup_session(conn, token, T0 + timedelta(minutes=5))
    assert found is not None and found.csrf_token == info.csrf_token
    with transaction(db_engine) as conn:
        assert accounts.lookup_session(conn, token + "x", T0) is None
        assert accounts.lookup_session(conn, "", T0) is None


def test_sessions_expire_when_idle_and_absolutely(db_engine: Engine) -> None:
    op = _add(db_engine)
    with transaction(db_engine) as conn:
        token, _ = accounts.create_session(conn, op.id, T0)
    idle = timedelta(seconds=accounts.SESSION_IDLE_S)
    with transaction(db_engine) as conn:
        assert accounts.lookup_session(conn, token, T0 + idle - timedelta(seconds=1)) is not None
    # the lookup above touched the session: idleness counts from it
    with transaction(db_engine) as conn:
        assert accounts.lookup_session(conn, token, T0 + 2 * idle - timedelta(seconds=2)) is not None
    with transaction(db_engine) as conn:
        assert accounts.lookup_session(conn, token, T0 + 3 * idle) is None
    # kept busy, it still ends at its absolute expiry
    with transaction(db_engine) as conn:
        token, _ = accounts.create_session(conn, op.id, T0)
    at = T0
    end = T0 + timedelta(seconds=accounts.SESSION_ABSOLUTE_S)
    while at + idle / 2 < end:
        at += idle / 2
        with transaction(db_engine) as conn:
            assert accounts.lookup_session(conn, token, at) is not None
    with transaction(db_engine) as conn:
        assert accounts.lookup_session(conn, token, end) is None


def test_logout_password_change_and_disable_end_sessions(db_engine: Engine) -> None:
    op = _add(db_engine)
    with transaction(db_engine) as conn:
        t1, _ = accounts.create_session(conn, op.id, T0)
        t2, _ = accounts.create_session(conn, op.id, T0)
        t3, _ = accounts.create_session(conn, op.id, T0)
    with transaction(db_engine) as conn:
        assert accounts.revoke_session(conn, t1, T0)
        assert not accounts.revoke_session(conn, t1, T0)
        assert accounts.lookup_session(conn, t1, T0) is None
        assert accounts.set_password(conn, "alice", hash_password("a new password", FAST), T0) == 2
        assert accounts.lookup_session(conn, t2, T0) is None and accounts.lookup_session(conn, t3, T0) is None
    with transaction(db_engine) as conn:
        t4, _ = accounts.create_session(conn, op.id, T0)
        assert accounts.set_disabled(conn, "alice", True, T0) == 1
        assert accounts.lookup_session(conn, t4, T0) is None
        assert accounts.login_candidate(conn, "alice", T0).refusal == "disabled"
        accounts.set_disabled(conn, "alice", False, T0)
        assert accounts.login_candidate(conn, "alice", T0).refusal is None
        assert accounts.purge_sessions(conn, T0 + timedelta(days=2)) == 4


def test_lockout_after_repeated_failures(db_engine: Engine) -> None:
    op = _add(db_engine)
    with transaction(db_engine) as conn:
        for _ in range(accounts.FAILED_LOGINS_MAX - 1):
            accounts.record_login(conn, op.id, False, T0)
        assert accounts.login_candidate(conn, "alice", T0).refusal is None
        accounts.record_login(conn, op.id, False, T0)
        assert accounts.login_candidate(conn, "alice", T0).refusal == "locked"
        later = T0 + timedelta(seconds=accounts.LOCKOUT_S + 1)
        assert accounts.login_candidate(conn, "alice", later).refusal is None
        accounts.record_login(conn, op.id, True, later)
        assert accounts.get_by_username(conn, "alice").last_login_at == later  # type: ignore[union-attr]
        assert accounts.login_candidate(conn, "nobody", T0).operator is None


def test_role_change(db_engine: Engine) -> None:
    op = _add(db_engine)
    with transaction(db_engine) as conn:
        token, _ = accounts.create_session(conn, op.id, T0)
        accounts.set_role(conn, "alice", "approver", T0)
        info = accounts.lookup_session(conn, token, T0)
        assert info is not None and info.operator.role is Role.APPROVER
        with pytest.raises(AccountError):
            accounts.set_role(conn, "alice", "boss", T0)
        with pytest.raises(AccountError):
            accounts.set_role(conn, "nobody", "viewer", T0)


def test_audit_log(db_engine: Engine) -> None:
    with transaction(db_engine) as conn:
        accounts.audit(conn, T0, "operator:alice", "login", "ok", "alice", {"ip": "127.0.0.1"}, "127.0.0.1")
        accounts.audit(conn, T0, "operator:bob", "voucher.cancel", "refused", "450100-2026-5201-X", {"why": "角色"})
        with pytest.raises(ValueError):
            accounts.audit(conn, T0, "x", "y", "maybe")
    with transaction(db_engine) as conn:
        page = accounts.list_audit(conn)
        assert page["total"] == 2
        assert [e["action"] for e in page["entries"]] == ["voucher.cancel", "login"]
        assert page["entries"][0]["detail"] == {"why": "角色"}
        assert accounts.list_audit(conn, actor="operator:alice")["total"] == 1
