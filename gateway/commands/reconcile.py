"""`tgw reconcile`: reconcile one bank's statement file for a check date against the store, by hand (issue 6).

Reads the statement in the format the bank's dialect declares (`Dialect.statement_format`, docs/banks/<dialect>.md),
or as `--format 4006|text|camt053` says (4006 pages may be given as several `--statement` files),
reconciles it against the vouchers in the instance's database (:mod:`gateway.reconcile.store_port`), stores the
run and its breaks (replacing an earlier run of the same bank and date), writes the reports (HTML, CSV, JSON) to
`--report-dir` (default `<instance>/reports/`) and prints a summary, or with `--json` the summary as JSON.

Without `--statement`, the running gateway asks the bank for its statement over the link (4005 → 4006 pages →
2507, :mod:`gateway.reconcile.link`) through its API, and this command waits for the run and prints the same
summary (the reports are the gateway's, in `<instance>/reports/`; `--report-dir` copies them).

Exit codes: 0 no break open after the run, 1 breaks remain, 2 usage, configuration or a statement that cannot be
read (nothing is stored then), or over the link a gateway that cannot be reached or a statement that did not come.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from banks.statement_format import KINDS
from gateway.commands.instance import _fail, _load
from protocols.money import parse_date8

if TYPE_CHECKING:
    from banks.dialect import Dialect


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reconcile", help="reconcile a bank's statement for a check date (日终对账)")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--date", required=True, type=_date, help="the check date, YYYYMMDD")
    p.add_argument("--bank", help="the bank code (default: the only configured bank)")
    p.add_argument(
        "--statement",
        action="append",
        type=Path,
        help="the statement file (repeat for the pages of a 4006 statement); without it the running gateway asks "
        "the bank for its statement over the link (4005 → 4006 pages → 2507) and reconciles that",
    )
    p.add_argument(
        "--format",
        choices=KINDS,
        help="the statement file's format (default: the one the bank's dialect declares; text without a declared "
        "layout is the standard text layout)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--report-dir", type=Path, help="where the reports go (default: <instance>/reports)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _date(text: str) -> date:
    try:
        return parse_date8(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def open_statement(kind: str | None, files: list[Path], dialect: Dialect | str | None = None) -> Any:
    """The statement stream of `files` read as `kind` (4006, text, camt053), by default as `dialect` declares.

    Args:
        kind: The format `--format` names; None for the one the dialect declares (the standard's 4006
            without a dialect).
        files: The statement file, or the pages of a 4006 statement.
        dialect: The bank's dialect (or its code): its `statement_format` gives the format, and the layout of
            a text file (the standard text layout when it declares none).

    Raises:
        ValueError: Several files for a statement that is one file.
    """
    from banks import registry
    from banks.statement_format import STANDARD_STATEMENT, STANDARD_TEXT
    from reconciliation.readers import read_4006, read_camt053, read_text

    if isinstance(dialect, str):
        dialect = registry.get(dialect)
    declared = STANDARD_STATEMENT if dialect is None else dialect.statement_format
    kind = kind or declared.kind
    if kind == "4006":
        return read_4006([str(f) for f in files])
    if len(files) != 1:
        raise ValueError(f"a {kind} statement is one file, not {len(files)}")
    if kind == "camt053":
        return read_camt053(str(files[0]))
    return read_text(str(files[0]), declared.text or STANDARD_TEXT)


class _Progress:
    """Counts the statement's records as the matcher stages them, with a rich progress bar on a terminal."""

    def __init__(self, statement: Any, enabled: bool) -> None:
        self._statement = statement
        self._enabled = enabled and sys.stderr.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._statement, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._statement)

    def records(self) -> Iterator[Any]:
        records = self._statement.records()
        if not self._enabled:
            yield from records
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed:,} lines")) as bar:
            task = bar.add_task("reading statement", total=None)
            for n, record in enumerate(records, 1):
                if n % 10_000 == 0:
                    bar.update(task, completed=n)
                yield record


def run(args: argparse.Namespace) -> int:
    """Reconcile, store, report; see the module docstring for exit codes."""
    from gateway.reconcile.store_port import run_day
    from gateway.store.db import create_engine_for
    from reconciliation.errors import ReconciliationError
    from reconciliation.ports import TempFileScratch
    from reconciliation.report import to_csv, to_html, to_json

    cfg = _load(args.config)
    if cfg is None:
        return 2
    bank = args.bank
    if bank is None:
        if len(cfg.banks) != 1:
            return _fail(f"name the bank with --bank (configured: {', '.join(cfg.banks) or 'none'})", 2)
        bank = next(iter(cfg.banks))
    elif bank not in cfg.banks:
        return _fail(f"unknown bank {bank!r}; configured: {', '.join(cfg.banks)}", 2)
    if not args.statement:
        return run_over_link(args, cfg, bank)
    try:
        statement = open_statement(args.format, args.statement, cfg.banks[bank].dialect)
    except (ValueError, OSError, ReconciliationError) as exc:
        return _fail(f"cannot read the statement: {exc}", 2)
    scratch_dir = cfg.directory / "scratch"
    scratch_dir.mkdir(exist_ok=True)
    progress: Any = _Progress(statement, not args.no_progress and not args.json)  # duck-typed StatementStream
    engine = create_engine_for(cfg.database_url)
    try:
        day = run_day(
            engine,
            bank,
            args.date,
            progress,
            scratch=TempFileScratch(str(scratch_dir)),
            now=datetime.now(UTC).replace(tzinfo=None),
        )
    except (OSError, ReconciliationError) as exc:
        return _fail(f"cannot reconcile {bank} {args.date:%Y%m%d}: {exc}", 2)
    finally:
        engine.dispose()

    result, carry = day.result, day.carry
    report_dir: Path = args.report_dir or cfg.directory / "reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    stem = report_dir / f"recon-{bank}-{args.date:%Y%m%d}"
    paths = {kind: stem.with_suffix(f".{kind}") for kind in ("html", "csv", "json")}
    paths["html"].write_text(to_html(result, open_breaks=carry.open), encoding="utf-8")
    paths["csv"].write_text(to_csv(result.breaks), encoding="utf-8")
    paths["json"].write_text(to_json(result, carry), encoding="utf-8")

    summary = {
        "bank": bank,
        "check_date": args.date.isoformat(),
        "run_id": day.run_id,
        "source": result.source,
        "ledger": {"count": result.ledger.count, "amount_fen": result.ledger.amount_fen},
        "statement": {"count": result.statement.count, "amount_fen": result.statement.amount_fen},
        "matched": result.matched,
        "reconciled_vouchers": day.linked,
        "breaks": {cls.value: n for cls, n in result.counts().items() if n},
        "open_breaks": len(carry.open),
        "closed_breaks": len(carry.closed),
        "reports": {kind: str(path) for kind, path in paths.items()},
    }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        verdict = "平 balanced" if not carry.open else "不平 breaks remain"
        print(f"{bank} {args.date:%Y-%m-%d}: {verdict}")
        print(f"  ledger {result.ledger.count} entries, statement {result.statement.count} lines")
        print(f"  matched {result.matched}, breaks {len(result.breaks)}, open after the run {len(carry.open)}")
        for cls, n in result.counts().items():
            if n:
                print(f"    {cls.label}: {n}")
        print(f"  reports: {paths['html']}")
    return 1 if carry.open else 0


# --- without --statement: over the link, through the running gateway (gateway/reconcile/link.py) ---------------

#: How often the link path asks the running gateway how its request stands.
_POLL_S = 0.25


def _api(cfg: Any, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Call the running gateway's API (address from run.json, token from the config) as `api:cli`."""
    import urllib.error
    import urllib.request

    from gateway.app import read_run_file

    info = read_run_file(cfg)
    host, port = info["web"] if info and info.get("web") else (cfg.web_host, cfg.web_port)
    request = urllib.request.Request(
        f"http://{host}:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {cfg.api_token}", "Content-Type": "application/json", "X-Actor": "cli"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def run_over_link(args: argparse.Namespace, cfg: Any, bank: str) -> int:
    """Ask the running gateway to reconcile `bank`'s statement of `--date` over the link and wait for the run
    (at most `[reconciliation] statement_timeout_s` and a minute); print its summary as the file path does.

    Exit codes as with a file: 0 balanced, 1 breaks remain, 2 usage, a gateway that cannot be reached, or a
    statement that did not come or could not be reconciled.
    """
    import shutil
    import time

    if args.format is not None:
        return _fail("--format describes a statement file: give it with --statement", 2)
    try:
        status, answer = _api(
            cfg, "POST", "/api/reconciliation/requests", {"bank": bank, "date": f"{args.date:%Y%m%d}"}
        )
    except OSError as exc:
        return _fail(f"the gateway is not reachable ({exc}); is `tgw run --config {args.config}` running?", 2)
    if status != 202:
        return _fail(f"the gateway refused the request ({status}): {(answer or {}).get('message', answer)}", 2)
    request = answer["request"]
    if not args.json:
        print(f"{bank} {args.date:%Y-%m-%d}: statement requested over the link ({request['msg_id']})", file=sys.stderr)
    deadline = time.monotonic() + cfg.reconciliation.statement_timeout_s + 60
    while request["state"] not in ("RECONCILED", "FAILED"):
        if time.monotonic() > deadline:
            return _fail(f"no run for request {request['msg_id']} in time; it is {request['state']}", 2)
        time.sleep(_POLL_S)
        try:
            status, request = _api(cfg, "GET", f"/api/reconciliation/requests/{request['id']}")
        except OSError as exc:
            return _fail(f"the gateway is no longer reachable ({exc})", 2)
        if status != 200:
            return _fail(f"cannot follow request {answer['request']['msg_id']} ({status}): {request}", 2)
    if request["state"] == "FAILED" or not request.get("run"):
        return _fail(f"{bank} {args.date:%Y%m%d} not reconciled: {request.get('error') or 'the run was replaced'}", 2)
    summary = dict(request["run"], request=request["msg_id"])
    if args.report_dir is not None:
        args.report_dir.mkdir(parents=True, exist_ok=True)
        summary["reports"] = {
            kind: shutil.copy(path, args.report_dir / Path(path).name) for kind, path in summary["reports"].items()
        }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print_summary(summary)
    return 1 if summary["open_breaks"] else 0


def print_summary(summary: dict[str, Any]) -> None:
    """The summary of a run (as :func:`run` prints it) from its JSON form."""
    from reconciliation.model import BreakClass

    day = date.fromisoformat(summary["check_date"])
    verdict = "平 balanced" if not summary["open_breaks"] else "不平 breaks remain"
    print(f"{summary['bank']} {day:%Y-%m-%d}: {verdict}")
    print(f"  ledger {summary['ledger']['count']} entries, statement {summary['statement']['count']} lines")
    print(
        f"  matched {summary['matched']}, breaks {sum(summary['breaks'].values())}, "
        f"open after the run {summary['open_breaks']}"
    )
    for cls in BreakClass:
        if summary["breaks"].get(cls.value):
            print(f"    {cls.label}: {summary['breaks'][cls.value]}")
    if summary.get("result_msg_id"):
        print(f"  result sent to the bank: 2507 {summary['result_msg_id']}")
    if summary.get("reports", {}).get("html"):
        print(f"  reports: {summary['reports']['html']}")
