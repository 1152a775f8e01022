"""`tgw demo`: the gateway, one simulated bank per agent bank and the finance-side feeder, in one process.

A fresh instance (through `tgw init`'s code path, ports chosen by the OS, SQLite) in a temporary directory, or
in `--dir`; the engine is :mod:`gateway.demo`. Progress is a live table on the terminal (`rich`); the summary
at the end gives counts by state and by bank, vouchers submitted, elapsed seconds, throughput and the seed,
and the reconciliation of the day with every bank (日终对账, over the link). `--discrepancies` makes the simulated
banks spoil their statements with discrepancies of every class (seeded); the summary then shows, per bank and
class, what was injected beside what the reconciliation found. `--json` prints only the summary, as JSON.
Without `--vouchers` it runs until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from gateway import demo as engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the gateway with simulated banks and the feeder (Ctrl-C ends it with a summary)",
        description="A fresh instance, the gateway, one simulated bank per agent bank and the feeder, "
        "all in this process; live progress, then a summary.",
    )
    parser.add_argument("--dir", type=Path, help="create the instance here (kept) instead of a temporary one")
    parser.add_argument("--vouchers", type=int, metavar="N", help="stop once N vouchers are final")
    parser.add_argument("--seed", type=int, help="seed of the feeder and the banks (default: random, printed)")
    parser.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    parser.add_argument(
        "--banks",
        metavar="CODE[:DIALECT],…",
        help=f"agent banks (default {','.join(engine.DEFAULT_BANKS)}; a bank's own dialect when one is "
        "registered, else standard)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=engine.DEFAULT_RATE_PER_S,
        metavar="PER_S",
        help=f"vouchers fed per second (default {engine.DEFAULT_RATE_PER_S:g}; 0: as fast as the gateway takes them)",
    )
    parser.add_argument(
        "--discrepancies",
        action="store_true",
        help="the simulated banks inject discrepancies of every class into their statements (seeded); the "
        "summary shows what was injected beside what the reconciliation found",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary; 0 when it ran, 1 when it could not, 2 for bad options."""
    if args.vouchers is not None and args.vouchers < 1:
        print("tgw: --vouchers must be at least 1", file=sys.stderr)
        return 2
    if args.rate < 0:
        print("tgw: --rate must not be negative", file=sys.stderr)
        return 2
    try:
        banks, key_type, notes = engine.fit_key_type(engine.parse_banks(args.banks), adjust=args.banks is None)
    except engine.DemoError as exc:
        print(f"tgw: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    keep = args.dir is not None
    directory = args.dir if keep else Path(tempfile.mkdtemp(prefix="tgw-demo-")) / "instance"
    options = engine.DemoOptions(
        directory=directory,
        seed=seed,
        banks=tuple(banks),
        vouchers=args.vouchers,
        rate_per_s=args.rate or None,
        keep=keep,
        key_type=key_type,
        notes=tuple(notes),
        discrepancies=args.discrepancies,
    )
    from twisted.internet import reactor

    progress = None if args.json else Progress(options)
    _logging(progress)
    if progress is not None:
        progress.console.print(
            f"[bold]tgw demo[/bold]  seed [cyan]{seed}[/cyan]  banks "
            + ", ".join(f"{c}:{d}" for c, d in banks)
            + f"  keys {key_type.upper()}"
            + (f"  until {args.vouchers} vouchers are final" if args.vouchers else "  until Ctrl-C")
            + ("  [yellow]statements with discrepancies[/yellow]" if args.discrepancies else "")
        )
        for note in notes:
            progress.console.print(f"[dim]note: {note}[/dim]")
    try:
        result = engine.run_demo(options, reactor, on_start=progress.start if progress else None)
    except engine.DemoError as exc:
        if progress is not None:
            progress.stop()
        print(f"tgw: demo failed: {exc} (seed {seed})", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.stop()
        if not keep:
            shutil.rmtree(directory.parent, ignore_errors=True)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_summary(result, progress.console if progress else None)
    return 0 if demo_agrees(result) else 1


def demo_agrees(result: dict[str, Any]) -> bool:
    """Whether the demo proved what it is for: the gateway's ledger equals every simulated bank's, and every
    bank's reconciliation ran and found exactly the discrepancies injected (none without `--discrepancies`)."""
    recon = result.get("reconciliation") or {}
    return bool(result.get("ledgers_agree", True)) and all(entry.get("agrees", False) for entry in recon.values())


def _logging(progress: Progress | None) -> None:
    """Warnings and errors only; above the live table when there is one."""
    root = logging.getLogger()
    root.handlers.clear()
    if progress is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=progress.console, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


class Progress:
    """The live table: per bank, vouchers by state; overall, submitted, final and final vouchers per second."""

    REFRESH_S = 0.25
    WINDOW_S = 5.0

    def __init__(self, options: engine.DemoOptions) -> None:
        from rich.console import Console

        self.options = options
        self.console = Console()
        self.live: Any = None
        self.sim: engine.Simulation | None = None
        self._loop: Any = None
        self._samples: deque[tuple[float, int]] = deque()

    def start(self, sim: engine.Simulation) -> None:
        from rich.live import Live
        from twisted.internet import task

        self.sim = sim
        web = sim.running.web_address if sim.running is not None else None
        kept = "kept" if self.options.keep else "removed at the end; --dir keeps it"
        self.console.print(f"instance {sim.cfg.directory} ({kept}; the API token is in its gateway.toml)")
        if web is not None:
            self.console.print(f"web on http://{web[0]}:{web[1]}/ (HTTP API under /api/)  ·  Ctrl-C ends the demo")
        self.live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
        self.live.start()
        self._loop = task.LoopingCall(self.refresh)
        self._loop.clock = sim.reactor
        self._loop.start(self.REFRESH_S, now=False)

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.live is not None:
            self.refresh()
            self.live.stop()
            self.live = None

    def render(self) -> Any:
        from rich.table import Table

        sim = self.sim
        table = Table(title="vouchers by bank and state", title_justify="left", expand=False)
        table.add_column("bank")
        table.add_column("dialect")
        for state in engine.STATES:
            table.add_column(state, justify="right")
        table.add_column("total", justify="right")
        if sim is None:
            return table
        tracker = sim.tracker
        totals = {s: 0 for s in engine.STATES}
        for code in sim.bank_codes:
            counts: dict[str, int] = tracker.counts.get(code, {})
            for s in engine.STATES:
                totals[s] += counts.get(s, 0)
            table.add_row(
                code,
                sim.cfg.banks[code].dialect,
                *[_cell(counts.get(s, 0), s) for s in engine.STATES],
                str(sum(counts.values())),
            )
        table.add_row("all", "", *[_cell(totals[s], s) for s in engine.STATES], str(tracker.total), style="bold")
        now = time.perf_counter()
        self._samples.append((now, tracker.final))
        while len(self._samples) > 1 and now - self._samples[0][0] > self.WINDOW_S:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        recent = (tracker.final - n0) / (now - t0) if now > t0 else 0.0
        elapsed = now - sim.started_at if sim.started_at is not None else 0.0
        overall = tracker.final / elapsed if elapsed > 0 else 0.0
        table.caption = (
            f"seed {sim.seed} · {elapsed:.1f} s · submitted {tracker.total} · final {tracker.final} · "
            f"{recent:.1f} final/s now, {overall:.1f}/s overall · " + (sim.phase or "Ctrl-C ends with a summary")
        )
        return table


_STYLES = {"PAID": "green", "FAILED": "red", "REJECTED": "red", "RETURNED": "yellow", "IN_DOUBT": "magenta"}


def _cell(n: int, state: str) -> str:
    if not n:
        return "[dim]·[/dim]"
    style = _STYLES.get(state)
    return f"[{style}]{n}[/{style}]" if style else str(n)


def print_summary(result: dict[str, Any], console: Any = None) -> None:
    """The summary as a table and a few lines."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="summary: vouchers by bank and state", title_justify="left")
    table.add_column("bank")
    shown = [s for s in engine.STATES if result["states"].get(s)]
    for state in shown:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    table.add_column("paid (yuan)", justify="right")
    table.add_column("ledger agrees", justify="center")
    for code, bank in result["banks"].items():
        agrees = bank.get("agrees_with_ledger")
        in_flight = bank["final"] < bank["vouchers"]
        table.add_row(
            code,
            *[_cell(bank["states"].get(s, 0), s) for s in shown],
            str(bank["vouchers"]),
            f"{(bank['paid_fen'] - bank['returned_fen']) / 100:,.2f}",
            "–"
            if agrees is None
            else "[green]yes[/green]"
            if agrees
            else "[yellow]in flight[/yellow]"
            if in_flight
            else "[red]no[/red]",
        )
    table.add_row(
        "all",
        *[_cell(result["states"].get(s, 0), s) for s in shown],
        str(result["vouchers_submitted"]),
        "",
        "",
        style="bold",
    )
    console.print(table)
    console.print(
        f"{result['vouchers_submitted']} vouchers submitted (+{result['quota_notices']} quota notices), "
        f"{result['vouchers_final']} final in {result['elapsed_s']:.1f} s: "
        f"[bold]{result['throughput_per_s']:.1f} vouchers/s[/bold]; seed [cyan]{result['seed']}[/cyan]"
        + (" (interrupted)" if result["interrupted"] else "")
    )
    print_reconciliation(result, console)
    if result.get("directory"):
        console.print(
            f"instance kept in {result['directory']}: tgw vouchers --config {result['directory']}/gateway.toml"
        )


def print_reconciliation(result: dict[str, Any], console: Any) -> None:
    """The day's reconciliation, a column per bank: both sides, the breaks found by class and, with
    `--discrepancies`, beside each count the discrepancies injected (`found/injected`), and the verdict."""
    from rich.table import Table

    from reconciliation.model import BreakClass

    runs: dict[str, Any] = result.get("reconciliation") or {}
    if not runs:
        console.print("[dim]no reconciliation: the run ended before the day could be reconciled[/dim]")
        return
    injecting = bool(result.get("discrepancies"))
    dates = sorted({d for run in runs.values() for d in run["check_dates"]})
    title = f"reconciliation 日终对账 of {', '.join(dates)}, over the link"
    table = Table(title=title + (": breaks found/injected" if injecting else ""), title_justify="left")
    table.add_column("", no_wrap=True)
    for code in runs:
        table.add_column(code, justify="right")

    def side(run: dict[str, Any], value: Any) -> str:
        return str(value) if run["runs"] else "–"

    table.add_row("ledger entries 平台", *[side(r, r["ledger"]["count"]) for r in runs.values()])
    table.add_row("statement lines 银行", *[side(r, r["statement"]["count"]) for r in runs.values()])
    table.add_row("matched 相符", *[side(r, r["matched"]) for r in runs.values()])
    for cls in BreakClass:
        if not any(r["breaks"][cls.value] or r["injected"][cls.value] for r in runs.values()):
            continue
        cells = []
        for run in runs.values():
            found, injected = run["breaks"][cls.value], run["injected"][cls.value]
            if injecting:
                style = "green" if found == injected else "red"
                cells.append(f"[{style}]{found}/{injected}[/{style}]")
            else:
                cells.append(f"[red]{found}[/red]" if found else "[dim]·[/dim]")
        table.add_row(cls.label, *cells)
    verdicts = []
    for run in runs.values():
        if run["error"]:
            verdicts.append("[red]failed[/red]")
        elif injecting:
            verdicts.append("[green]一致 agrees[/green]" if run["agrees"] else "[red]不一致 differs[/red]")
        else:
            verdicts.append("[green]平 balanced[/green]" if not any(run["breaks"].values()) else "[red]不平[/red]")
    table.add_row("result", *verdicts, style="bold")
    console.print(table)
    for code, run in runs.items():
        if run["error"]:
            console.print(f"[red]{code}: reconciliation failed: {run['error']}[/red]")
        for note in run.get("notes", ()):
            console.print(f"[yellow]{code}: statement sent without discrepancies: {note}[/yellow]")
    if injecting:
        agree = all(run["agrees"] for run in runs.values())
        if not any(n for run in runs.values() for n in run["injected"].values()):
            console.print("[yellow]nothing was injected: a statement needs six lines or more (more --vouchers)[/]")
        elif agree:
            console.print("every discrepancy injected was found as its class, and nothing else")
        else:
            console.print("[red]the breaks found differ from the discrepancies injected[/red]")
