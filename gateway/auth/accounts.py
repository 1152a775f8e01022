"""Operator accounts, server-side sessions and the audit log, over the store (SQLAlchemy Core).

Every function takes a connection inside the caller's transaction and an explicit `now` (naive UTC); nothing here
reads the clock. Password hashing (0.3 s, 128 MiB) is *not* done inside these functions: the web layer verifies
a password between two short transactions, on a worker thread, so no database transaction waits on scrypt.

Sessions (decisions):

- The cookie carries 32 random bytes (URL-safe base64); the table keeps only their SHA-256. A copy of the
  database lets nobody sign in.
- A session ends at the first of: :data:`SESSION_ABSOLUTE_S` after sign-in, :data:`SESSION_IDLE_S` without a
  request, sign-out, the operator being disabled or given a new password (every session of theirs is revoked).
- Each session has its own CSRF token (synchronizer token pattern), which every state-changing form carries.
- `last_seen_at` is written at most every :data:`SESSION_TOUCH_S`, so reading pages does not write each time.

Lockout: after :data:`FAILED_LOGINS_MAX` wrong passwords in a row an account is locked for :data:`LOCKOUT_S`
(the count resets on a good login); unknown usernames are answered like wrong passwords.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from gateway.auth.roles import Role
from gateway.store.tables import AUDIT_OUTCOMES, audit_log, operator_sessions, operators

SESSION_ABSOLUTE_S: Final = 12 * 3600
SESSION_IDLE_S: Final = 30 * 60
SESSION_TOUCH_S: Final = 60
FAILED_LOGINS_MAX: Final = 5
LOCKOUT_S: Final = 15 * 60
TOKEN_BYTES: Final = 32
AUDIT_PAGE_MAX: Final = 500

_USERNAME: Final = re.compile(r"[a-z][a-z0-9._-]{1,63}")


class AccountError(Exception):
    """An account operation cannot be done (the message says why, for the operator)."""


@dataclass(frozen=True, slots=True)
class Operator:
    """A row of `operators`, without the password hash."""

    id: int
    username: str
    display_name: str
    role: Role
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    @property
    def actor(self) -> str:
        """How history and the audit log name this person."""
        return f"operator:{self.username}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session: who, their role, and the CSRF token their forms must carry."""

    operator: Operator
    csrf_token: str
    created_at: datetime
    expires_at: datetime


def _operator(row: RowMapping) -> Operator:
    return Operator(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        disabled=bool(row["disabled"]),
        locked_until=row["locked_until"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
    )


def token_digest(token: str) -> str:
    """What the table stores for a session token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def validate_username(username: str) -> str:
    """Usernames are lower-case ASCII: a letter, then letters, digits, `.`, `_` or `-` (2 to 64 in all).

    Raises:
        AccountError: otherwise.
    """
    if not _USERNAME.fullmatch(username):
        raise AccountError(f"username {username!r}: use 2-64 lower-case letters, digits, '.', '_' or '-'")
    return username


# --- accounts -------------------------------------------------------------------------------------------------


def create_operator(
    conn: Connection, username: str, display_name: str, role: Role | str, password_hash: str, now: datetime
) -> Operator:
    """Create an account.

    Raises:
        AccountError: a bad username or role, or the username is taken.
    """
    validate_username(username)
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
    if get_by_username(conn, username) is not None:
        raise AccountError(f"operator {username!r} exists already")
    conn.execute(
        insert(operators).values(
            username=username,
            display_name=display_name or username,
            role=role.value,
            password_hash=password_hash,
            disabled=False,
            failed_logins=0,
            created_at=now,
            updated_at=now,
            password_changed_at=now,
        )
    )
    found = get_by_username(conn, username)
    assert found is not None
    return found


def get_by_username(conn: Connection, username: str) -> Operator | None:
    """The account, or None."""
    row = conn.execute(select(operators).where(operators.c.username == username)).mappings().first()
    return None if row is None else _operator(row)


def list_operators(conn: Connection) -> list[Operator]:
    """Every account, by username."""
    return [_operator(r) for r in conn.execute(select(operators).order_by(operators.c.username)).mappings()]


def _require(conn: Connection, username: str) -> Operator:
    found = get_by_username(conn, username)
    if found is None:
        raise AccountError(f"no operator {username!r}")
    return found


def set_password(conn: Connection, username: str, password_hash: str, now: datetime) -> int:
    """Store a new password hash, clear any lockout and end every session of the account; returns how many."""
    op = _require(conn, username)
    conn.execute(
        update(operators)
        .where(operators.c.id == op.id)
        .values(
            password_hash=password_hash, password_changed_at=now, updated_at=now, failed_logins=0, locked_until=None
        )
    )
    return revoke_all_sessions(conn, op.id, now)


def set_disabled(conn: Connection, username: str, disabled: bool, now: datetime) -> int:
    """Disable (or enable) an account; disabling ends its sessions (returns how many)."""
    op = _require(conn, username)
    conn.execute(update(operators).where(operators.c.id == op.id).values(disabled=disabled, updated_at=now))
    return revoke_all_sessions(conn, op.id, now) if disabled else 0


def set_role(conn: Connection, username: str, role: Role | str, now: datetime) -> None:
    """Give an account another role (takes effect on its next request)."""
    op = _require(conn, username)
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}") from None
    conn.execute(update(operators).where(operators.c.id == op.id).values(role=role.value, updated_at=now))


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    """What a sign-in needs to check a password outside the transaction."""

    operator: Operator | None  # None: no such user (verify a dummy hash all the same)
    password_hash: str | None
    refusal: str | None  # "disabled", "locked": refused whatever the password


def login_candidate(conn: Connection, username: str, now: datetime) -> LoginCandidate:
    """Step 1 of a sign-in: the account and its hash, or why it cannot sign in at all."""
    row = conn.execute(select(operators).where(operators.c.username == username)).mappings().first()
    if row is None:
        return LoginCandidate(None, None, None)
    op = _operator(row)
    if op.disabled:
        return LoginCandidate(op, row["password_hash"], "disabled")
    if op.locked_until is not None and op.locked_until > now:
        return LoginCandidate(op, row["password_hash"], "locked")
    return LoginCandidate(op, row["password_hash"], None)


def record_login(conn: Connection, operator_id: int, ok: bool, now: datetime, new_hash: str | None = None) -> None:
    """Step 2 of a sign-in: reset or count failures (locking after :data:`FAILED_LOGINS_MAX`)."""
    if ok:
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if new_hash is not None:
            values["password_hash"] = new_hash
        conn.execute(update(operators).where(operators.c.id == operator_id).values(**values))
        return
    failed = conn.execute(
        update(operators)
        .where(operators.c.id == operator_id)
        .values(failed_logins=operators.c.failed_logins + 1)
        .returning(operators.c.failed_logins)
    ).scalar_one()
    if failed >= FAILED_LOGINS_MAX:
        conn.execute(
            update(operators)
            .where(operators.c.id == operator_id)
            .values(locked_until=now + timedelta(seconds=LOCKOUT_S), failed_logins=0)
        )


# --- sessions -------------------------------------------------------------------------------------------------


def create_session(
    conn: Connection, operator_id: int, now: datetime, remote_addr: str | None = None, user_agent: str | None = None
) -> tuple[str, SessionInfo]:
    """Start a session; returns the cookie's token (shown once, stored only as a digest) and the session."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    csrf = secrets.token_urlsafe(TOKEN_BYTES)
    expires = now + timedelta(seconds=SESSION_ABSOLUTE_S)
    conn.execute(
        insert(operator_sessions).values(
            token_sha256=token_digest(token),
            operator_id=operator_id,
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            remote_addr=(remote_addr or "")[:64] or None,
            user_agent=(user_agent or "")[:255] or None,
        )
    )
    row = conn.execute(select(operators).where(operators.c.id == operator_id)).mappings().one()
    return token, SessionInfo(_operator(row), csrf, now, expires)


def lookup_session(conn: Connection, token: str, now: datetime) -> SessionInfo | None:
    """The live session a cookie names, or None (unknown, revoked, expired, idle, or the account disabled)."""
    if not token or len(token) > 128:
        return None
    s = operator_sessions.c
    row = (
        conn.execute(
            select(operator_sessions, operators)
            .join(operators, operators.c.id == s.operator_id)
            .where(s.token_sha256 == token_digest(token))
        )
        .mappings()
        .first()
    )
    if row is None or row["revoked_at"] is not None or row["disabled"]:
        return None
    if row["expires_at"] <= now or row["last_seen_at"] + timedelta(seconds=SESSION_IDLE_S) <= now:
        return None
    if (now - row["last_seen_at"]).total_seconds() >= SESSION_TOUCH_S:
        conn.execute(update(operator_sessions).where(s.token_sha256 == row["token_sha256"]).values(last_seen_at=now))
    op = _operator(row)
    return SessionInfo(op, row["csrf_token"], row["created_at"], row["expires_at"])


def revoke_session(conn: Connection, token: str, now: datetime) -> bool:
    """End one session (sign-out); False if it was not live."""
    result = conn.execute(
        update(operator_sessions)
        .where(operator_sessions.c.token_sha256 == token_digest(token), operator_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


def revoke_all_sessions(conn: Connection, operator_id: int, now: datetime) -> int:
    """End every live session of an account; returns how many."""
    result = conn.execute(
        update(operator_sessions)
        .where(operator_sessions.c.operator_id == operator_id, operator_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)


def purge_sessions(conn: Connection, now: datetime) -> int:
    """Delete sessions that ended more than a day ago (their sign-ins stay in the audit log)."""
    cutoff = now - timedelta(days=1)
    s = operator_sessions.c
    result = conn.execute(operator_sessions.delete().where((s.expires_at < cutoff) | (s.revoked_at < cutoff)))
    return int(result.rowcount)


# --- audit ----------------------------------------------------------------------------------------------------


def audit(
    conn: Connection,
    at: datetime,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> int:
    """Append one entry to the audit log: who (`actor`), when (`at`), what (`action` on `target`), how it ended."""
    if outcome not in AUDIT_OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    text = json.dumps(detail or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return int(
        conn.execute(
            insert(audit_log)
            .values(
                at=at,
                actor=actor[:64],
                action=action[:64],
                target=None if target is None else target[:128],
                outcome=outcome,
                detail=text,
                remote_addr=None if remote_addr is None else remote_addr[:64],
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    )


def list_audit(
    conn: Connection, *, actor: str | None = None, action: str | None = None, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """A page of the audit log, newest first, with the total count of the filter."""
    where = []
    if actor:
        where.append(audit_log.c.actor == actor)
    if action:
        where.append(audit_log.c.action == action)
    total = conn.execute(select(func.count()).select_from(audit_log).where(*where)).scalar_one()
    rows = conn.execute(
        select(audit_log)
        .where(*where)
        .order_by(audit_log.c.id.desc())
        .limit(max(1, min(limit, AUDIT_PAGE_MAX)))
        .offset(max(0, offset))
    ).mappings()
    entries = [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
    return {"total": total, "entries": entries}
