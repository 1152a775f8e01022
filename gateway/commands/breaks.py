"""`tgw breaks list|show|reasons|assign|comment|resolve|approve|reject`: reconciliation breaks and their resolution
(issue 6 §4), on the instance's database directly (like `tgw reconcile`: whether the gateway runs or not).

The actor is `cli:NAME`, NAME from `--as` (default: the operating-system user); four eyes compares actors, so an
approval needs a different `--as` (a different person) than the proposal. A resolution whose reason changes no
voucher closes the break at once; one that corrects a voucher (CONFIRMED_PAID, CONFIRMED_FAILED,
CONFIRMED_RETURNED) is proposed and applied when someone else approves it (`docs/reconciliation.md`).
`--json` prints the break (or the list) as the HTTP API gives it.

Exit codes: 0 done, 1 refused (the reason on stderr; recorded in the audit log) or not found, 2 usage, the
configuration, or the database unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from gateway.commands.instance import _fail, _load
from protocols.money import format_amount_fen, parse_date8

#: `--as`: who acts (recorded as `cli:NAME`), the same rule as the API's `X-Actor`.
NAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,48}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("breaks", help="reconciliation breaks: list, show, assign, comment, resolve, approve (差错处理)")
    commands = p.add_subparsers(dest="breaks_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser, *, acting: bool = False) -> None:
        q.add_argument("--config", required=True, type=Path)
        q.add_argument("--json", action="store_true", help="print JSON (as the HTTP API gives it)")
        if acting:
            q.add_argument("--as", dest="actor", help="who acts, recorded as cli:NAME (default: the OS user)")

    ls = commands.add_parser("list", help="breaks, oldest first (default: the open ones)")
    common(ls)
    ls.add_argument("--run", type=int, help="the breaks of one run")
    ls.add_argument("--date", type=_date, help="the breaks of the runs of a check date (YYYYMMDD)")
    ls.add_argument("--bank")
    ls.add_argument("--class", dest="kind", help="a break class: amount_mismatch, missing_at_bank, …")
    ls.add_argument("--state", default="OPEN", help="OPEN (default), CLOSED, a resolution state (PROPOSED, …) or all")
    ls.add_argument("--assigned-to", help="as stored: operator:alice, cli:bob, …")
    ls.add_argument("--limit", type=int, default=1000)
    ls.set_defaults(func=list_breaks)

    show = commands.add_parser("show", help="one break: both sides and its history")
    common(show)
    show.add_argument("id", type=int)
    show.set_defaults(func=show_break)

    reasons = commands.add_parser("reasons", help="the reason codes a break is resolved with")
    reasons.add_argument("--json", action="store_true")
    reasons.set_defaults(func=list_reasons)

    assign = commands.add_parser("assign", help="give a break to someone to work on")
    common(assign, acting=True)
    assign.add_argument("id", type=int)
    assign.add_argument("--to", required=True, help="who (operator:alice, cli:bob, …)")
    assign.set_defaults(func=act, step="assign")

    comment = commands.add_parser("comment", help="add a comment to a break's history")
    common(comment, acting=True)
    comment.add_argument("id", type=int)
    comment.add_argument("text")
    comment.set_defaults(func=act, step="comment")

    resolve = commands.add_parser("resolve", help="resolve with a reason code (a voucher correction is proposed)")
    common(resolve, acting=True)
    resolve.add_argument("id", type=int)
    resolve.add_argument("--reason", required=True, help="a reason code (tgw breaks reasons)")
    resolve.add_argument("--note", default="", help="what was found (required for OTHER)")
    resolve.set_defaults(func=act, step="resolve")

    approve = commands.add_parser("approve", help="approve someone else's proposed resolution (four eyes)")
    common(approve, acting=True)
    approve.add_argument("id", type=int)
    approve.set_defaults(func=act, step="approve")

    reject = commands.add_parser("reject", help="turn someone else's proposed resolution down")
    common(reject, acting=True)
    reject.add_argument("id", type=int)
    reject.add_argument("--reason", required=True, help="why")
    reject.set_defaults(func=act, step="reject")


def _date(text: str) -> date:
    try:
        return parse_date8(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _yuan(fen: int | None) -> str:
    return "" if fen is None else format_amount_fen(fen)


def _line(b: dict[str, Any]) -> str:
    resolution = f"{b['resolution_state']} {b['resolution']}" if b["resolution_state"] else ""
    return (
        f"#{b['id']:<6} {b['check_date']} {b['bank']:<6} {b['kind']:<17} {b['key']:<28} "
        f"{_yuan(b['ledger_fen']):>12} {_yuan(b['bank_fen']):>12} {_yuan(b['difference_fen']):>12} "
        f"{b['age_days']:>3}d {b['state']:<6} {resolution:<28} {b['assigned_to'] or ''}"
    ).rstrip()


def _store(cfg: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(conn, *args)` in one transaction on the instance's database."""
    from gateway.dbthread import in_transaction
    from gateway.store.db import create_engine_for

    engine = create_engine_for(cfg.database_url)
    try:
        return in_transaction(engine, fn, *args)
    finally:
        engine.dispose()


def list_breaks(args: argparse.Namespace) -> int:
    from gateway.reconcile.provider import StoreReconciliation
    from gateway.store.db import StoreUnavailable

    cfg = _load(args.config)
    if cfg is None:
        return 2
    if args.limit < 0:
        return _fail("--limit must not be negative", 2)
    state = None if args.state.lower() == "all" else args.state
    recon = StoreReconciliation()

    def read(conn: Any) -> list[dict[str, Any]]:
        runs: list[int | None] = [args.run]
        if args.date is not None:
            runs = [r["id"] for r in recon.runs(conn, check_date=args.date, bank=args.bank)]
            if args.run is not None:
                runs = [r for r in runs if r == args.run]
        found: list[dict[str, Any]] = []
        for run_id in runs:
            found += recon.breaks(
                conn,
                run_id,
                kind=args.kind,
                state=state,
                bank=args.bank,
                assigned_to=args.assigned_to,
                limit=args.limit,
            )
        return found[: args.limit]

    try:
        found = _store(cfg, read)
    except ValueError as exc:
        return _fail(str(exc), 2)
    except StoreUnavailable as exc:
        return _fail(f"the database is not reachable: {exc}", 2)
    if args.json:
        _print_json({"breaks": found})
        return 0
    for b in found:
        print(_line(b))
    print(f"{len(found)} break(s)", file=sys.stderr)
    return 0


def show_break(args: argparse.Namespace) -> int:
    from gateway.reconcile.provider import StoreReconciliation
    from gateway.store.db import StoreUnavailable

    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        found = _store(cfg, StoreReconciliation().break_detail, args.id)
    except StoreUnavailable as exc:
        return _fail(f"the database is not reachable: {exc}", 2)
    if found is None:
        return _fail(f"no break {args.id}")
    if args.json:
        _print_json(found)
    else:
        _print_detail(found)
    return 0


def _print_detail(b: dict[str, Any]) -> None:
    print(_line(b | {"bank": b["bank_code"]}))  # in the detail, "bank" is the statement's side
    print(f"  {b['detail']}")
    if b["voucher_key"]:
        print(f"  voucher   {b['voucher_key']}")
    for name, side in (("ledger", b["ledger"]), ("bank", b["bank"])):
        if side is not None:
            print(
                f"  {name:<9} {side['serial'] or '-'}  {_yuan(side['amount_fen'])}  {side['status']}  "
                f"{side['payee_acct_no']}  {side['pay_date']}  ({side['ref']})"
            )
    if b["resolution_state"]:
        print(f"  resolution {b['resolution']} {b['resolution_state']}, proposed by {b['proposed_by']}", end="")
        print(f", decided by {b['approved_by']}" if b["approved_by"] else "")
        if b["note"]:
            print(f"  note      {b['note']}")
    for e in b["events"]:
        detail = json.dumps(e["detail"], ensure_ascii=False, sort_keys=True)
        print(f"    {e['at']}  {e['event']:<10} {e['actor']:<24} {detail}")


def list_reasons(args: argparse.Namespace) -> int:
    from gateway.reconcile.provider import StoreReconciliation

    reasons = StoreReconciliation().reasons()
    if args.json:
        _print_json({"reasons": reasons})
        return 0
    for r in reasons:
        approval = "needs a second operator's approval" if r["needs_approval"] else "closes the break at once"
        print(f"{r['code']:<20} {r['zh']}  {r['en']} ({approval})")
    return 0


def act(args: argparse.Namespace) -> int:
    """assign / comment / resolve / approve / reject, in one transaction; a refusal is recorded apart."""
    from gateway.reconcile import resolution
    from gateway.reconcile.provider import StoreReconciliation
    from gateway.store.db import StoreUnavailable

    cfg = _load(args.config)
    if cfg is None:
        return 2
    name = args.actor or getpass.getuser()
    if not NAME.fullmatch(name):
        return _fail(f"--as is 1-48 of A-Z a-z 0-9 _ . @ -, not {name[:60]!r}", 2)
    actor, now, recon = f"cli:{name}", datetime.now(UTC).replace(tzinfo=None), StoreReconciliation()
    step: str = args.step

    def run(conn: Any) -> tuple[str, Any, dict[str, Any] | None]:
        outcome: Any = None
        if step == "assign":
            resolution.assign(conn, args.id, args.to, actor, now)
        elif step == "comment":
            resolution.comment(conn, args.id, args.text, actor, now)
        elif step == "resolve":
            outcome = resolution.propose(conn, args.id, args.reason, args.note, actor, now)
        elif step == "approve":
            outcome = resolution.approve(conn, args.id, actor, now)
        else:
            resolution.reject(conn, args.id, args.reason, actor, now)
        return step, outcome, recon.break_detail(conn, args.id)

    try:
        _, outcome, found = _store(cfg, run)
    except resolution.Refused as exc:
        with contextlib.suppress(StoreUnavailable):  # the refusal is on the terminal in any case
            _store(cfg, resolution.record_refusal, now, actor, step, args.id, str(exc))
        return _fail(f"refused: {exc}")
    except StoreUnavailable as exc:
        return _fail(f"the database is not reachable: {exc}", 2)
    assert found is not None
    if args.json:
        _print_json(found)
        return 0
    said = {
        "assign": f"assigned to {found['assigned_to']}",
        "comment": "comment added",
        "resolve": (
            f"{outcome}: {found['resolution']}"
            + (" — awaits a second operator's approval (tgw breaks approve)" if outcome == "PROPOSED" else ", closed")
        ),
        "approve": f"APPROVED: {found['resolution']}, closed",
        "reject": "REJECTED: the break stays open",
    }[step]
    print(f"break {args.id} ({found['kind']} {found['key']}): {said}")
    if step == "approve" and outcome is not None:
        print(f"  voucher {outcome.key} is now {outcome.state.value}")
    return 0
