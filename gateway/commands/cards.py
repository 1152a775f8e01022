"""`tgw cards list|show|approve|reject|due|repay`: official-card spending, its review and repayment (issue 5).

Like the voucher commands (:mod:`gateway.commands.instance`), reads go to the store directly (`list`, `show`,
`due`: they work whether the gateway runs or not) and writes go through the running gateway's API (`approve`,
`reject`, `repay`: the gateway applies them on its clock and wakes its bank links). Card numbers are printed
masked; `--json` prints exactly what the API returns. A record is named `BANK:SPENDID` (as `list` prints it).

Exit codes: 0 done, 1 refused (every problem on stderr) or not found, 2 usage or the gateway unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import config as configuration
from gateway.commands.instance import _fail, _load, _read_store, api_call
from protocols.money import format_amount_fen, parse_date8


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cards = sub.add_parser("cards", help="official-card spending: review, repayment, deadlines")
    commands = cards.add_subparsers(dest="cards_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, type=Path)
        p.add_argument("--json", action="store_true", help="print the JSON the API gives")

    ls = commands.add_parser("list", help="spending records (default: the ones not reimbursed yet)")
    common(ls)
    ls.add_argument("--agency")
    ls.add_argument("--state", default="open", help="a state, open (not reimbursed: the default) or all")
    ls.add_argument("--bank")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--today", type=_date, help="YYYYMMDD for the days left (default: today in the instance's zone)")
    ls.set_defaults(func=list_spending)

    show = commands.add_parser("show", help="one record with its events")
    common(show)
    show.add_argument("ref", help="BANK:SPENDID")
    show.set_defaults(func=show_spending)

    approve = commands.add_parser("approve", help="approve records for repayment (all or none; holds quota)")
    common(approve)
    approve.add_argument("--agency", required=True, help="the agency whose records these are")
    approve.add_argument("refs", nargs="+", metavar="BANK:SPENDID")
    approve.set_defaults(func=review, action="approve")

    reject = commands.add_parser("reject", help="reject records with a reason (personal spending)")
    common(reject)
    reject.add_argument("--agency", required=True, help="the agency whose records these are")
    reject.add_argument("--reason", required=True)
    reject.add_argument("refs", nargs="+", metavar="BANK:SPENDID")
    reject.set_defaults(func=review, action="reject")

    due = commands.add_parser("due", help="records due for repayment soon, and overdue ones")
    common(due)
    due.add_argument("--agency")
    due.add_argument("--lead-days", type=int, help="default: [cards] due_lead_days")
    due.add_argument("--today", type=_date, help="YYYYMMDD (default: today in the instance's time zone)")
    due.set_defaults(func=show_due)

    repay = commands.add_parser("repay", help="send repayment vouchers (8202) for the approved records")
    common(repay)
    repay.add_argument("--agency")
    repay.add_argument("--bank")
    repay.set_defaults(func=repay_approved)


def _date(text: str) -> date:
    try:
        return parse_date8(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _today(cfg: configuration.Config, given: date | None) -> date:
    return given or datetime.now(ZoneInfo(cfg.timezone)).date()


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _line(r: dict[str, Any]) -> str:
    days = r.get("days_left")
    left = f"{r['limit_date']}" + (f" ({days:+d}d)" if days is not None and r["state"] != "REPAID" else "")
    deadline = {"overdue": " OVERDUE", "due": " due"}.get(r.get("deadline") or "", "")
    reason = f"  {r['reason']}" if r.get("reason") else ""
    return (
        f"{r['ref']:<28} {r['state']:<9} {format_amount_fen(r['amount_fen']):>12}  {r['card']}  "
        f"{r['card_holder']:<6} {r['agency_code']:<8} {left}{deadline}{reason}"
    )


def list_spending(args: argparse.Namespace) -> int:
    from gateway.cards import queries

    cfg = _load(args.config)
    if cfg is None:
        return 2
    f = queries.CardFilter(agency=args.agency, state=args.state, bank=args.bank, limit=args.limit, offset=args.offset)
    try:
        page = _read_store(cfg, queries.list_spending, f, _today(cfg, args.today), cfg.cards.due_lead_days)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.json:
        _print_json(page)
        return 0
    for r in page["records"]:
        print(_line(r))
    print(
        f"{len(page['records'])} of {page['total']} record(s), {format_amount_fen(page['total_fen'])} yuan",
        file=sys.stderr,
    )
    return 0


def show_spending(args: argparse.Namespace) -> int:
    from gateway.cards import queries
    from gateway.cards.service import Ref

    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        ref = Ref.parse(args.ref)
    except ValueError as exc:
        return _fail(str(exc), 2)
    found = _read_store(cfg, queries.get_spending, ref.bank, ref.spend_id, _today(cfg, None))
    if found is None:
        return _fail(f"no spending record {ref}")
    if args.json:
        _print_json(found)
        return 0
    print(_line(found))
    print(f"  merchant  {found['merchant_name']}  on {found['txn_date']} {found['txn_time']}")
    if found["voucher"]:
        print(f"  voucher   {found['voucher']}")
    for e in found["events"]:
        detail = json.dumps(e["detail"], ensure_ascii=False)
        print(f"    {e['at']}  {e['event']:<13} {e['from'] or '':>9} -> {e['to']:<9} {e['actor']}  {detail}")
    return 0


def show_due(args: argparse.Namespace) -> int:
    from gateway.cards import queries

    cfg = _load(args.config)
    if cfg is None:
        return 2
    lead_days = cfg.cards.due_lead_days if args.lead_days is None else args.lead_days
    if lead_days < 0:
        return _fail("--lead-days must not be negative", 2)
    report = _read_store(cfg, queries.due_report, _today(cfg, args.today), lead_days, args.agency)
    if args.json:
        _print_json(report)
        return 0
    counts = report["counts"]
    print(
        f"{report['today']}: {counts['overdue']} overdue ({format_amount_fen(counts['overdue_fen'])} yuan), "
        f"{counts['due']} due within {lead_days} days ({format_amount_fen(counts['due_fen'])} yuan)"
    )
    for title, key in (("OVERDUE", "overdue"), ("DUE", "due")):
        if report[key]:
            print(f"{title}:")
            for r in report[key]:
                print(f"  {_line(r)}")
    return 0


def _post(cfg: configuration.Config, path: str, body: dict[str, Any]) -> tuple[int, Any] | None:
    try:
        return api_call(cfg, "POST", path, json.dumps(body, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        print(f"tgw: the gateway is not reachable ({exc}); is `tgw run --config {cfg.path}` running?", file=sys.stderr)
        return None


def _refused(status: int, answer: Any) -> None:
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    print(f"refused ({status}){': ' + message if message else ''}", file=sys.stderr)
    for problem in answer.get("problems", []) if isinstance(answer, dict) else []:
        print(f"  {problem['field']}: {problem['message']}", file=sys.stderr)


def review(args: argparse.Namespace) -> int:
    """approve / reject through the running gateway."""
    cfg = _load(args.config)
    if cfg is None:
        return 2
    body: dict[str, Any] = {"agency": args.agency, "refs": args.refs}
    if args.action == "reject":
        body["reason"] = args.reason
    answered = _post(cfg, f"/api/cards/{args.action}", body)
    if answered is None:
        return 2
    status, answer = answered
    if args.json:
        _print_json(answer)
    if status != 200:
        if not args.json:
            _refused(status, answer)
        return 1
    if not args.json:
        for ref in answer["refs"]:
            print(f"{ref} {answer['state']}")
    return 0


def repay_approved(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    answered = _post(cfg, "/api/cards/repay", {"agency": args.agency, "bank": args.bank})
    if answered is None:
        return 2
    status, answer = answered
    if args.json:
        _print_json(answer)
    if status != 201:
        if not args.json:
            _refused(status, answer)
        return 1
    if not args.json:
        for v in answer["vouchers"]:
            print(
                f"{v['key']:<40} {v['bank']:<6} {v['agency']:<8} {v['card']}  {v['records']:>3} record(s) "
                f"{format_amount_fen(v['amount_fen']):>12}"
            )
        for s in answer["skipped"]:
            print(f"skipped {s['agency']} {s['card']} ({len(s['refs'])} record(s)): {s['reason']}", file=sys.stderr)
        print(f"{len(answer['vouchers'])} repayment voucher(s) queued", file=sys.stderr)
    return 0
