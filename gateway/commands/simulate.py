"""`tgw simulate bank`: a simulated agent bank, in its own process, against a running gateway.

It connects as one configured bank of an instance, over mutual TLS with that bank's own certificate and key
(`DIR/pki/banks/CODE/`), to the address the running gateway wrote to `DIR/run.json`, and speaks the bank's
configured dialect: it signs on, acknowledges vouchers, pays or refuses them by its rules, sends receipts and
returns, and reconnects (resending what the gateway has not acknowledged) until SIGINT or SIGTERM. Every random
choice comes from `--seed` (printed at start, so a run can be repeated). Asked for a statement (4005), it sends its
ledger's statement of the date in 4006 pages of `--statement-page-size` details, spoilt by `--discrepancies` if
given; what it injected and the results (2507) it received are written to `DIR/simulators/CODE.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from gateway import config as configuration
from gateway.config import ConfigError
from protocols.messages import MAX_STATEMENT_DETAILS

#: How often the bank logs what it has done so far.
STATS_INTERVAL_S = 10.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("simulate", help="simulators that connect to a running gateway")
    ssub = parser.add_subparsers(dest="simulate_command", metavar="WHAT", required=True)
    bank = ssub.add_parser(
        "bank",
        help="a simulated agent bank: connects over mutual TLS as --bank and pays by its rules",
        description="Runs until SIGINT or SIGTERM. The gateway's address comes from DIR/run.json, written by "
        "a running `tgw run --config DIR/gateway.toml`.",
    )
    bank.add_argument("--config", required=True, type=Path, help="the instance's gateway.toml")
    bank.add_argument("--bank", required=True, metavar="CODE", help="which configured bank to be")
    bank.add_argument("--rules", type=Path, help="rules file (TOML or JSON, see simulators/rules.example.toml)")
    bank.add_argument("--seed", type=int, help="seed of every random choice (default: random, printed)")
    bank.add_argument("--log-level", default="INFO", help="INFO logs every payment; WARNING only problems")
    bank.add_argument(
        "--discrepancies",
        metavar="CLASS=N,…",
        help="spoil the statements it sends over the link (4006) with these discrepancies per break class "
        "(amount_mismatch=2,duplicate=1; all=N for every class), seeded; what was injected goes to "
        "DIR/simulators/CODE.json",
    )
    bank.add_argument(
        "--statement-page-size",
        type=int,
        default=MAX_STATEMENT_DETAILS,
        metavar="N",
        help=f"details per 4006 page of its statements (1-{MAX_STATEMENT_DETAILS}, default {MAX_STATEMENT_DETAILS})",
    )
    bank.set_defaults(func=run_bank)


def _fail(message: str, code: int = 2) -> int:
    print(f"tgw: {message}", file=sys.stderr)
    return code


def write_status(path: Path, bank: Any) -> None:
    """`DIR/simulators/CODE.json`: the statements the bank sent over the link (with what was injected into each)
    and the reconciliation results (2507) it received, by check date; replaced atomically."""
    data = {
        "bank": bank.setup.code,
        "seed": bank.seed,
        "statements": {day.isoformat(): sent.as_json() for day, sent in sorted(bank.statements.items())},
        "results": {
            day.isoformat(): {
                "x_check_result": result.x_check_result,
                "x_diff_num": result.x_diff_num,
                "details": [
                    {"vt_code": d.vt_code, "voucher_no": d.voucher_no, "x_check_reason": d.x_check_reason}
                    for d in result.details
                ],
            }
            for day, result in sorted(bank.reconcile_results.items())
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


def run_bank(args: argparse.Namespace) -> int:
    """Connect and serve until stopped; 0 after a clean stop, 2 when it cannot start."""
    from simulators.rules import RuleError, RuleSet

    try:
        cfg = configuration.load(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.bank not in cfg.banks:
        return _fail(f"{args.bank} is not a bank of {cfg.path} (configured: {', '.join(cfg.banks) or 'none'})")
    if not 1 <= args.statement_page_size <= MAX_STATEMENT_DETAILS:
        return _fail(f"--statement-page-size must be 1-{MAX_STATEMENT_DETAILS}, not {args.statement_page_size}")
    counts = None
    if args.discrepancies is not None:
        from gateway.reconcile.discrepancies import parse_counts

        try:
            counts = parse_counts(args.discrepancies)
        except ValueError as exc:
            return _fail(f"--discrepancies: {exc}")
    from gateway.app import read_run_file

    info = read_run_file(cfg)
    if not info or not info.get("bank"):
        return _fail(f"no {cfg.run_file}: is `tgw run --config {args.config}` running?")
    host, port = info["bank"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    rules = None
    if args.rules is not None:
        try:
            rules = RuleSet.load(args.rules)
        except RuleError as exc:
            return _fail(str(exc))
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger(f"tgw.simulate.{args.bank}")
    print(f"simulated bank {args.bank}: seed {seed}", flush=True)

    from twisted.internet import reactor, task

    from gateway.demo import bank_setup
    from simulators.bank import SimulatedBank

    setup = bank_setup(cfg, args.bank, (host, int(port)))
    spoil = None
    if counts is not None:
        from gateway.reconcile.discrepancies import spoiler

        spoil = spoiler(counts, seed)
    bank = SimulatedBank(
        setup, reactor, rules=rules, seed=seed, statement_page_size=args.statement_page_size, spoiler=spoil
    )
    status_file = cfg.directory / "simulators" / f"{args.bank}.json"
    log.info(
        "connecting to %s:%d as %s (dialect %s, certificate %s, %d rules)",
        host,
        port,
        args.bank,
        setup.dialect,
        setup.cert,
        len(bank.rules.rules),
    )

    def event(kind: str, data: dict[str, Any]) -> None:
        if kind == "signed_on":
            log.info("signed on (connection %d)", bank.stats.connections)
        elif kind in ("paid", "refused"):
            log.info("%s %s", kind, data.get("key"))
        elif kind in ("statement_sent", "reconcile_result"):
            log.info("%s %s", kind, json.dumps(data, ensure_ascii=False))
            write_status(status_file, bank)

    def report() -> None:
        s = bank.stats
        state = "connected" if bank.connection is not None and bank.connection.signed_on else "not connected"
        log.info(
            "%s; vouchers %d, paid %d, refused %d, receipts %d, returns %d, status replies %d, unacknowledged %d",
            state,
            s.vouchers,
            s.paid,
            s.refused,
            s.receipts_sent,
            s.returns_sent,
            s.status_replies,
            len(bank.unacked),
        )

    bank.listeners.append(event)
    ticker = task.LoopingCall(report)
    ticker.clock = reactor

    def shutdown() -> None:
        log.info("stopping")
        if ticker.running:
            ticker.stop()
        report()
        bank.stop()

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)  # type: ignore[attr-defined]
    reactor.callWhenRunning(bank.start)  # type: ignore[attr-defined]
    reactor.callWhenRunning(ticker.start, STATS_INTERVAL_S, False)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]  # Twisted stops the reactor on SIGINT and SIGTERM
    return 0
