"""`tgw users add|passwd|disable|enable|role|list|metrics-token`: dashboard accounts, managed on the gateway's host.

Accounts are managed from the command line, by whoever can read the instance's configuration, not from the web:
a stolen dashboard session can never create an account or raise a role. Every change is written to the audit log
with the actor `cli:<login name>`.

Passwords are read from the terminal (twice, without echo) or, for scripts, as one line from standard input with
`--password-stdin`; never from the command line, where other users could read it in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import pwd
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import config as configuration
from gateway.auth import accounts, passwords
from gateway.auth.roles import Role
from gateway.config import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="dashboard operator accounts (add, passwd, disable, list, …)")
    cmds = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, type=Path)

    a = cmds.add_parser("add", help="create an account")
    common(a)
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=[r.value for r in Role])
    a.add_argument("--name", default="", help="display name (default: the username)")
    a.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    a.set_defaults(func=add)

    p = cmds.add_parser("passwd", help="set a new password (ends the account's sessions)")
    common(p)
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=passwd)

    d = cmds.add_parser("disable", help="disable an account (ends its sessions)")
    common(d)
    d.add_argument("username")
    d.set_defaults(func=disable)

    e = cmds.add_parser("enable", help="enable a disabled account")
    common(e)
    e.add_argument("username")
    e.set_defaults(func=enable)

    r = cmds.add_parser("role", help="give an account another role")
    common(r)
    r.add_argument("username")
    r.add_argument("role", choices=[x.value for x in Role])
    r.set_defaults(func=set_role)

    ls = cmds.add_parser("list", help="list the accounts")
    common(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_users)

    m = cmds.add_parser("metrics-token", help="create a new bearer token for /metrics (printed once)")
    common(m)
    m.set_defaults(func=metrics_token)


def _actor() -> str:
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    return f"cli:{name}"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _fail(message: str, code: int = 1) -> int:
    print(f"tgw users: {message}", file=sys.stderr)
    return code


def _store(args: argparse.Namespace, fn: Any, *fn_args: Any) -> Any:
    """Run `fn(conn, *fn_args)` in one transaction on the instance's database."""
    from gateway.dbthread import in_transaction
    from gateway.store.db import create_engine_for

    cfg = configuration.load(args.config)
    engine = create_engine_for(cfg.database_url)
    try:
        return in_transaction(engine, fn, *fn_args)
    finally:
        engine.dispose()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise passwords.PasswordPolicyError("the two passwords differ")
    passwords.check_policy(password)
    return password


def _run(args: argparse.Namespace, fn: Any, *fn_args: Any) -> int:
    try:
        return int(_store(args, fn, *fn_args) or 0)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except accounts.AccountError as exc:
        return _fail(str(exc))


def add(args: argparse.Namespace) -> int:
    try:
        accounts.validate_username(args.username)
        password_hash = passwords.hash_password(_read_password(args))
    except (accounts.AccountError, passwords.PasswordPolicyError) as exc:
        return _fail(str(exc))
    actor, now = _actor(), _now()

    def work(conn: Any) -> int:
        op = accounts.create_operator(conn, args.username, args.name, args.role, password_hash, now)
        accounts.audit(conn, now, actor, "user.add", "ok", op.username, {"role": op.role.value})
        return 0

    code = _run(args, work)
    if code == 0:
        print(f"added {args.username} ({args.role})")
    return code


def passwd(args: argparse.Namespace) -> int:
    try:
        password_hash = passwords.hash_password(_read_password(args))
    except passwords.PasswordPolicyError as exc:
        return _fail(str(exc))
    actor, now = _actor(), _now()

    def work(conn: Any) -> int:
        ended = accounts.set_password(conn, args.username, password_hash, now)
        accounts.audit(conn, now, actor, "user.passwd", "ok", args.username, {"sessions_ended": ended})
        return 0

    code = _run(args, work)
    if code == 0:
        print(f"new password set for {args.username}; their sessions were ended")
    return code


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    actor, now = _actor(), _now()

    def work(conn: Any) -> int:
        ended = accounts.set_disabled(conn, args.username, disabled, now)
        action = "user.disable" if disabled else "user.enable"
        accounts.audit(conn, now, actor, action, "ok", args.username, {"sessions_ended": ended})
        return 0

    code = _run(args, work)
    if code == 0:
        print(f"{'disabled' if disabled else 'enabled'} {args.username}")
    return code


def disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def set_role(args: argparse.Namespace) -> int:
    actor, now = _actor(), _now()

    def work(conn: Any) -> int:
        accounts.set_role(conn, args.username, args.role, now)
        accounts.audit(conn, now, actor, "user.role", "ok", args.username, {"role": args.role})
        return 0

    code = _run(args, work)
    if code == 0:
        print(f"{args.username} is now {args.role}")
    return code


def list_users(args: argparse.Namespace) -> int:
    try:
        found: list[accounts.Operator] = _store(args, accounts.list_operators)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if args.json:
        rows = [
            {
                "username": o.username,
                "name": o.display_name,
                "role": o.role.value,
                "disabled": o.disabled,
                "last_login_at": o.last_login_at.isoformat() if o.last_login_at else None,
            }
            for o in found
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for o in found:
        state = "disabled" if o.disabled else "active"
        last = o.last_login_at.isoformat(timespec="seconds") if o.last_login_at else "never"
        print(f"{o.username:<20} {o.role.value:<9} {state:<8} last login {last}  {o.display_name}")
    return 0


def metrics_token(args: argparse.Namespace) -> int:
    from gateway import metrics

    token, digest = metrics.new_token()
    actor, now = _actor(), _now()

    def work(conn: Any) -> int:
        metrics.store_token_digest(conn, digest)
        accounts.audit(conn, now, actor, "metrics.token", "ok", None, {})
        return 0

    code = _run(args, work)
    if code == 0:
        print(token)
    return code
