"""The reconciliation benchmark: a statement of N lines against a ledger of N vouchers, beside a pandas reference.

For each size it writes, once, a ledger file in key order (what the gateway's store yields) and a statement
in the standard text layout in the bank's serial order (so the matcher must sort it), with a few discrepancies
of every class injected (:mod:`reconciliation.inject`); with ``--statement-order key`` the statement comes in
voucher order instead, as some banks list it. Then each contender runs in a fresh process, so that its peak
memory is its own, once per round, for several rounds, so that all of them meet the same conditions of the
machine:

* **ours**: :func:`reconciliation.readers.read_text` and :func:`reconciliation.matcher.reconcile`, the ledger
  streamed from its file (:class:`FileLedger`, standing in for a database cursor), the statement staged in
  temporary files;
* **pandas**: what a user would otherwise reach for: `read_csv` both files, an outer `merge` on the voucher,
  and comparing the columns.

Reported per size and contender: the median wall time (and the range), CPU time, the median over the rounds
of its CPU time divided by pandas's in the same round, the peak resident memory and its growth over the
process's size before the work began, and the breaks found. pandas is optional (the
project's `bench` extra); without it the reference is skipped with a message.

This module reads the clock and starts processes, so it is the one module of `reconciliation/` outside the
purity rule (tests/reconciliation/test_purity.py); nothing imports it.

Usage: ``python -m reconciliation.bench [--sizes 100000,1000000] [--repeat 3] [--statement-order serial|key]
[--json FILE]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from functools import partial
from itertools import chain, repeat
from pathlib import Path
from typing import Any, Final

from protocols.messages import StatementDetail
from reconciliation.formats import STANDARD_TEXT
from reconciliation.inject import inject
from reconciliation.matcher import MatchLimits, reconcile
from reconciliation.model import BreakClass, LedgerEntry, Status, Totals
from reconciliation.ports import TempFileScratch
from reconciliation.readers import StatementStream, read_4006, read_camt053, read_text

BANK: Final = "ICBC"
CHECK_DATE: Final = date(2026, 11, 23)
DEFAULT_SIZES: Final = (100_000, 1_000_000)
#: The statement file of each format the benchmark can read ("text" is also what pandas reads).
STATEMENT_FILES: Final = {"text": "statement.txt", "4006": "statement-4006.xml", "camt053": "statement-camt053.xml"}
_CONTENDER_OF: Final = {"text": "ours", "4006": "ours-4006", "camt053": "ours-camt053"}
PANDAS_MISSING: Final = (
    "pandas is not installed: the pandas reference is skipped (install the project's `bench` extra, "
    "or `pip install pandas`)"
)


class FileLedger:
    """A ledger port over a file in key order: the benchmark's stand-in for the gateway's store.

    Each line is `AdmDivCode|StYear|VtCode|VoucherNo|serial|amount_fen|ProState|payee|YYYYMMDD`, and entries
    are built a block of lines (64 KiB, some 600 entries) at a time as the matcher reads on, as a database
    cursor fetches rows: memory holds one block whatever the ledger's size.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def entries(self, bank: str, check_date: date) -> Iterator[LedgerEntry]:
        """The entries, in the file's (key) order, built a block of lines at a time (a cursor's `fetchmany`)."""
        return chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[list[LedgerEntry]]:
        states = {str(s.value): s for s in Status}
        dates: dict[str, date] = {}
        years: dict[str, int] = {}
        new = tuple.__new__
        with self._path.open("rb") as file:
            rest = b""
            while data := file.read(1 << 16):
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                # One split of the whole block (lines joined by the delimiter); every ninth value is a column.
                values = data[:cut].decode("utf-8").replace("\n", "|").split("|")
                values.pop()  # the empty string after the block's last line break
                if len(values) % 9 or data.count(b"|", 0, cut) != 8 * (len(values) // 9):
                    raise ValueError(f"{self._path}: not lines of 9 fields")
                adm, year, vt_code, voucher_no, serial, amount, state, payee, day = (values[i::9] for i in range(9))
                for text in set(day) - dates.keys():
                    dates[text] = date(int(text[:4]), int(text[4:6]), int(text[6:]))
                for text in set(year) - years.keys():
                    years[text] = int(text)
                yield list(
                    map(
                        new,
                        repeat(LedgerEntry),
                        zip(
                            adm,
                            map(years.__getitem__, year),
                            vt_code,
                            voucher_no,
                            serial,
                            map(int, amount),
                            map(states.__getitem__, state),
                            payee,
                            map(dates.__getitem__, day),
                            strict=True,
                        ),
                    )
                )
            if rest:
                raise ValueError(f"{self._path}: the last line has no line break")

    def control_totals(self, bank: str, check_date: date) -> Totals | None:
        """None: the file has no independent totals."""
        return None


# --- data -------------------------------------------------------------------------------------------------------


def generate(
    directory: Path,
    lines: int,
    *,
    seed: int,
    per_class: int,
    formats: Sequence[str] = ("text",),
    key_order: bool = False,
) -> dict[str, Any]:
    """Write `ledger.txt` (key order) and `statement.txt` (serial order, spoilt) for `lines` vouchers.

    The same statement is also written as one 4006 document and as a camt.053 message for the `formats`
    that ask for them (:data:`STATEMENT_FILES`).

    A subset of the vouchers, numbered apart from the rest so that invented numbers cannot collide, goes
    through :func:`~reconciliation.inject.inject` with `per_class` discrepancies of every class (one summary
    mismatch). Returns what was injected, per class.
    """
    rng = random.Random(seed)
    spoilable = min(lines, 12 * per_class)
    day = f"{CHECK_DATE:%Y%m%d}"
    ledger: list[str] = []
    statement: list[str] = []
    candidates: list[StatementDetail] = []
    for i in range(lines):
        state = rng.choice((0, 0, 0, 0, 0, 0, 0, 0, 1, 2))
        vt_code = "2252" if state == 1 else ("5201", "8202")[i & 1]
        amount_fen = rng.randrange(1, 10**9) * (-1 if state == 1 else 1)
        payee = f"6222{rng.randrange(10**15):015d}"
        if i < spoilable:
            voucher_no, serial = f"{vt_code}4599{i:010d}", f"{BANK}X{i:08d}"
            candidates.append(
                StatementDetail(
                    vt_code=vt_code,
                    voucher_no=voucher_no,
                    x_agent_business_no=serial,
                    x_pay_date=CHECK_DATE,
                    amt_fen=amount_fen,
                    pro_state=state,
                    payee_acct_no=payee,
                )
            )
        else:
            voucher_no, serial = f"{vt_code}4501{i:010d}", f"{BANK}{day}{rng.randrange(10**10):010d}{i}"
            statement.append(f"{vt_code}|{voucher_no}|{serial}|{day}|{_yuan(amount_fen)}|{state}|{payee}\n")
        ledger.append(
            f"{vt_code}\x00{voucher_no}\x01450100|2026|{vt_code}|{voucher_no}|{serial}|{amount_fen}|{state}"
            f"|{payee}|{day}\n"
        )
    counts = {cls: per_class for cls in BreakClass} | {BreakClass.SUMMARY_MISMATCH: 1 if per_class else 0}
    spoilt, injected = inject(candidates, rng, counts, check_date=CHECK_DATE)
    statement += [
        f"{x.vt_code}|{x.voucher_no}|{x.x_agent_business_no}|{x.x_pay_date:%Y%m%d}|{_yuan(x.amt_fen)}|{x.pro_state}"
        f"|{x.payee_acct_no}\n"
        for x in spoilt
    ]
    rng.shuffle(statement)  # the bank lists by serial, which follows no voucher order
    if key_order:  # ... unless it lists by voucher (`--statement-order key`)
        statement.sort(key=lambda line: line.split("|", 2)[:2])
    total_fen = sum(_fen(x) for x in statement) + injected.summary_delta.amount_fen
    ledger.sort()  # by VtCode NUL VoucherNo: the key order of the port
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "ledger.txt").open("w", encoding="utf-8") as file:
        file.writelines(line.split("\x01", 1)[1] for line in ledger)
    with (directory / "statement.txt").open("w", encoding="utf-8") as file:
        file.write(f"H|{day}|{len(statement)}|{_yuan(total_fen)}\n")
        file.writelines(statement)
    declared = Totals(len(statement), total_fen)
    if "4006" in formats:
        _write_4006(directory / STATEMENT_FILES["4006"], statement, declared)
    if "camt053" in formats:
        _write_camt053(directory / STATEMENT_FILES["camt053"], statement, declared)
    return injected.as_json()


def _write_4006(path: Path, statement: list[str], declared: Totals) -> None:
    """The statement as one bare 4006 `Statement` document."""
    with path.open("w", encoding="utf-8") as file:
        file.write(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Statement><CheckDate>{CHECK_DATE:%Y%m%d}</CheckDate>'
            f"<AllNum>{declared.count}</AllNum><AllAmt>{_yuan(declared.amount_fen)}</AllAmt>"
            "<ChildPackNum>1</ChildPackNum><CurPackNo>1</CurPackNo><DetailList>\n"
        )
        for line in statement:
            vt_code, voucher_no, serial, day, amount, state, payee = line.rstrip("\n").split("|")
            file.write(
                f"<Detail><VtCode>{vt_code}</VtCode><VoucherNo>{voucher_no}</VoucherNo>"
                f"<XAgentBusinessNo>{serial}</XAgentBusinessNo><XPayDate>{day}</XPayDate><Amt>{amount}</Amt>"
                f"<ProState>{state}</ProState><PayeeAcctNo>{payee}</PayeeAcctNo></Detail>\n"
            )
        file.write("</DetailList></Statement>\n")


def _write_camt053(path: Path, statement: list[str], declared: Totals) -> None:
    """The statement as a camt.053.001.08 message (the mapping of docs/reconciliation.md)."""
    net = "DBIT" if declared.amount_fen >= 0 else "CRDT"
    with path.open("w", encoding="utf-8") as file:
        file.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            f"<GrpHdr><MsgId>{BANK}-{CHECK_DATE:%Y%m%d}</MsgId></GrpHdr><Stmt><Id>S1</Id>"
            f'<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
            f"<Dt><Dt>{CHECK_DATE.isoformat()}</Dt></Dt></Bal>"
            f"<TxsSummry><TtlNtries><NbOfNtries>{declared.count}</NbOfNtries><TtlNetNtry>"
            f"<Amt>{_yuan(abs(declared.amount_fen))}</Amt><CdtDbtInd>{net}</CdtDbtInd></TtlNetNtry></TtlNtries>"
            "</TxsSummry>\n"
        )
        for line in statement:
            vt_code, voucher_no, serial, day, amount, state, payee = line.rstrip("\n").split("|")
            credit = state == "1"
            party = "DbtrAcct" if credit else "CdtrAcct"
            file.write(
                f'<Ntry><Amt Ccy="CNY">{amount.lstrip("-")}</Amt><CdtDbtInd>{"CRDT" if credit else "DBIT"}</CdtDbtInd>'
                f"<Sts><Cd>{'INFO' if state == '2' else 'BOOK'}</Cd></Sts>"
                f"<BookgDt><Dt>{day[:4]}-{day[4:6]}-{day[6:]}</Dt></BookgDt><AcctSvcrRef>{serial}</AcctSvcrRef>"
                f"<BkTxCd><Prtry><Cd>{vt_code}</Cd></Prtry></BkTxCd><NtryDtls><TxDtls><Refs>"
                f"<EndToEndId>{voucher_no}</EndToEndId></Refs><RltdPties><{party}><Id><Othr><Id>{payee}</Id></Othr>"
                f"</Id></{party}></RltdPties></TxDtls></NtryDtls></Ntry>\n"
            )
        file.write("</Stmt></BkToCstmrStmt></Document>\n")


def _yuan(amount_fen: int) -> str:
    sign = "-" if amount_fen < 0 else ""
    return f"{sign}{abs(amount_fen) // 100}.{abs(amount_fen) % 100:02d}"


def _fen(line: str) -> int:
    return int(line.split("|", 5)[4].replace(".", ""))


# --- the contenders (each in a process of its own) --------------------------------------------------------------


def run_ours(directory: Path, statement_format: str = "text") -> dict[str, Any]:
    """Reconcile the files with the matcher, reading the statement in `statement_format`; one measurement."""
    before = _measure_start()
    path = directory / STATEMENT_FILES[statement_format]
    if statement_format == "text":
        statement: StatementStream = read_text(path, STANDARD_TEXT)
    elif statement_format == "4006":
        statement = read_4006([path])
    else:
        statement = read_camt053(path)
    result = reconcile(
        FileLedger(directory / "ledger.txt").entries(BANK, CHECK_DATE),
        statement,
        bank=BANK,
        check_date=CHECK_DATE,
        scratch=TempFileScratch(str(directory)),
        limits=MatchLimits(max_breaks=1_000_000),
    )
    measured = _measure_end(before)
    return measured | {
        "matched": result.matched,
        "breaks": {cls.value: n for cls, n in result.counts().items()},
    }


def run_pandas(directory: Path) -> dict[str, Any]:
    """Read both files with pandas and merge them; the measurement of one run (or why it cannot run)."""
    try:
        pd: Any = importlib.import_module("pandas")  # optional: the `bench` extra
    except ImportError:
        return {"error": PANDAS_MISSING}
    before = _measure_start()
    columns = ["vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee"]
    statement = pd.read_csv(directory / "statement.txt", sep="|", header=None, skiprows=1, names=columns, dtype=str)
    ledger = pd.read_csv(
        directory / "ledger.txt",
        sep="|",
        header=None,
        names=["adm", "year", "vt_code", "voucher_no", "serial", "amount_fen", "status", "payee", "pay_date"],
        dtype=str,
    )
    statement["amount_fen"] = statement["amount"].str.replace(".", "", regex=False).astype("int64")
    ledger["amount_fen"] = ledger["amount_fen"].astype("int64")
    merged = ledger.merge(statement, on=["vt_code", "voucher_no"], how="outer", suffixes=("_l", "_s"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    found = {
        "ledger_only": int((merged["_merge"] == "left_only").sum()),
        "statement_only": int((merged["_merge"] == "right_only").sum()),
        "amount": int((both["amount_fen_l"] != both["amount_fen_s"]).sum()),
        "status": int((both["status_l"] != both["status_s"]).sum()),
        "payee": int((both["payee_l"] != both["payee_s"]).sum()),
        "pay_date": int((both["pay_date_l"] != both["pay_date_s"]).sum()),
    }
    measured = _measure_end(before)
    return measured | {
        "matched": len(both) - sum(v for k, v in found.items() if k not in ("ledger_only", "statement_only")),
        "breaks": found,
    }


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    Linux's `VmHWM` where there is one: unlike `ru_maxrss`, which Linux carries across `exec` from the forked
    parent, it counts only this program's own memory.
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:  # pragma: no cover (not Linux)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def _measure_start() -> tuple[float, float, int]:
    return time.perf_counter(), time.process_time(), peak_rss_kib()


def _measure_end(before: tuple[float, float, int]) -> dict[str, Any]:
    wall, cpu, rss_kib = before
    peak_kib = peak_rss_kib()
    return {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mib": peak_kib / 1024,
        "rss_growth_mib": (peak_kib - rss_kib) / 1024,
    }


CONTENDERS: Final[dict[str, Callable[[Path], dict[str, Any]]]] = {
    "ours": run_ours,
    "ours-4006": partial(run_ours, statement_format="4006"),
    "ours-camt053": partial(run_ours, statement_format="camt053"),
    "pandas": run_pandas,
}


def spawn(contender: str, directory: Path) -> dict[str, Any]:
    """Run one contender in a fresh Python process and return its measurement."""
    done = subprocess.run(
        [sys.executable, "-m", "reconciliation.bench", "--worker", contender, "--workdir", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        return {"error": f"{contender} failed: {done.stderr.strip().splitlines()[-1:]}"}
    measured: dict[str, Any] = json.loads(done.stdout)
    return measured


# --- the command ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (`tgw bench reconcile`); print a table, optionally write the figures as JSON."""
    parser = argparse.ArgumentParser(prog="tgw bench reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="statement lines, comma-separated")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds per size, each contender once a round (medians shown)"
    )
    parser.add_argument("--per-class", type=int, default=None, help="discrepancies per class (default: size/10,000)")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--workdir", default=None, help="where the data files go (default: a temporary directory)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas reference")
    parser.add_argument(
        "--formats", default="text", help="statement formats ours reads, comma-separated: text, 4006, camt053"
    )
    parser.add_argument(
        "--statement-order",
        choices=("serial", "key"),
        default="serial",
        help="the statement's lines in the bank's serial order (the matcher sorts them) or already in voucher order",
    )
    parser.add_argument("--worker", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(CONTENDERS[args.worker](Path(args.workdir))))
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    formats = args.formats.split(",")
    unknown = set(formats) - STATEMENT_FILES.keys()
    if unknown:
        parser.error(f"unknown statement formats: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="tgw-bench-reconcile-", dir=args.workdir) as scratch:
        figures = [_one_size(Path(scratch) / str(size), size, formats, args) for size in sizes]
    print(_table(figures, args.statement_order))
    if any(f.get("pandas", {}).get("error") == PANDAS_MISSING for f in figures):
        print(f"\n{PANDAS_MISSING}.")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


def _one_size(directory: Path, size: int, formats: list[str], args: argparse.Namespace) -> dict[str, Any]:
    per_class = args.per_class if args.per_class is not None else max(1, size // 10_000)
    injected = generate(
        directory, size, seed=args.seed, per_class=per_class, formats=formats, key_order=args.statement_order == "key"
    )
    figures: dict[str, Any] = {
        "lines": size,
        "injected": injected,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    contenders = [_CONTENDER_OF[f] for f in formats] + ([] if args.no_pandas else ["pandas"])
    # Round by round, each contender once a round, so that all of them meet the same conditions of the machine.
    rounds = [{contender: spawn(contender, directory) for contender in contenders} for _ in range(max(1, args.repeat))]
    for contender in contenders:
        runs = [r[contender] for r in rounds]
        failed = next((r for r in runs if "error" in r), None)
        if failed is not None:
            figures[contender] = failed
            continue
        seconds = [r["seconds"] for r in runs]
        figures[contender] = {
            "seconds_median": statistics.median(seconds),
            "seconds_min": min(seconds),
            "seconds_max": max(seconds),
            "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "rss_growth_mib": max(r["rss_growth_mib"] for r in runs),
            "matched": runs[0]["matched"],
            "breaks": runs[0]["breaks"],
            "runs": len(runs),
        }
    if "error" not in figures.get("pandas", {"error": ""}):
        for contender in contenders[:-1]:
            if "error" not in figures[contender]:
                # Each round's own ratio (the same conditions), then the median over the rounds.
                figures[contender]["cpu_ratio_to_pandas"] = statistics.median(
                    r[contender]["cpu_seconds"] / r["pandas"]["cpu_seconds"] for r in rounds
                )
                figures[contender]["wall_ratio_to_pandas"] = statistics.median(
                    r[contender]["seconds"] / r["pandas"]["seconds"] for r in rounds
                )
    return figures


def _table(figures: list[dict[str, Any]], order: str = "serial") -> str:
    rows = [
        f"reconcile: statement in {order} order (ours-4006, ours-camt053: the same in XML); ledger streamed in key "
        "order; ÷pandas: the median over the rounds of each round's CPU time over pandas's",
        f"{'lines':>10}  {'contender':<12} {'median s':>9} {'range s':>13} {'cpu s':>7} {'÷pandas':>8} {'lines/s':>10} "
        f"{'peak RSS MiB':>13} {'growth MiB':>11}  breaks",
    ]
    for f in figures:
        for contender in CONTENDERS:
            m = f.get(contender)
            if m is None:
                continue
            if "error" in m:
                rows.append(f"{f['lines']:>10,}  {contender:<12} {m['error']}")
                continue
            breaks = sum(m["breaks"].values())
            ratio = f"{m['cpu_ratio_to_pandas']:.2f}" if "cpu_ratio_to_pandas" in m else ""
            rows.append(
                f"{f['lines']:>10,}  {contender:<12} {m['seconds_median']:>9.2f} "
                f"{m['seconds_min']:>6.2f}–{m['seconds_max']:<6.2f} {m['cpu_seconds_median']:>7.2f} {ratio:>8} "
                f"{f['lines'] / m['seconds_median']:>10,.0f} {m['peak_rss_mib']:>13.1f} {m['rss_growth_mib']:>11.1f}  "
                f"{breaks:,}"
            )
        injected = ", ".join(f"{name} {n}" for name, n in f["injected"].items() if n)
        rows.append(f"{'':>10}  injected: {sum(f['injected'].values()):,} ({injected})")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover (run as `python -m reconciliation.bench`)
    sys.exit(main())
