"""Each bank's statement file in the format its dialect declares: golden files, and a simulated bank's end of day.

The golden files under `tests/banks/data/statements/` are one per registered dialect, each in the format the
dialect declares (docs/banks/<code>.md): read with `tgw reconcile`'s own `open_statement`, they give the same
four lines (a paid 5201, a paid 8202, a return, a refused 5201). Then, for every dialect: a simulated bank's
ledger (`simulators.ledger.Ledger`) executes vouchers the gateway's store sent, the store records its receipts and
returns, the bank writes the day's statement in its declared format (`simulators.statements`), and
`tgw reconcile --statement FILE` without `--format` finds no break; spoilt with `reconciliation.inject`, it
finds exactly the breaks injected, class by class. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from sqlalchemy import Engine

from banks import registry
from gateway import cli
from gateway.commands.reconcile import open_statement
from gateway.config import PaymentSettings
from gateway.demo import create_instance
from gateway.payments import service
from gateway.store.db import create_engine_for, transaction
from protocols import samples
from protocols.messages import Voucher
from reconciliation.errors import StatementError
from reconciliation.inject import inject
from reconciliation.model import BreakClass, Totals
from simulators import statements
from simulators.ledger import Ledger
from tests.gateway.conftest import NODE, NOW_NAIVE

DATA: Final = Path(__file__).parent.parent / "banks" / "data" / "statements"
CHECK_DATE: Final = date(2026, 11, 23)
#: The golden file of each dialect, and the bank whose serials it carries.
GOLDEN: Final = {
    "standard": ("ABC", "standard-4006.xml"),
    "icbc": ("ICBC", "icbc-camt053.xml"),
    "ccb": ("CCB", "ccb-fixed-gbk.txt"),
    "bocom": ("BOCOM", "bocom.csv"),
    "gxnx": ("GXNX", "gxnx-gbk.txt"),
}
#: Every class, as the demo's `--discrepancies` injects them.
INJECTED: Final = {
    BreakClass.MISSING_AT_BANK: 2,
    BreakClass.MISSING_IN_LEDGER: 2,
    BreakClass.STATUS_MISMATCH: 1,
    BreakClass.AMOUNT_MISMATCH: 2,
    BreakClass.PAYEE_MISMATCH: 1,
    BreakClass.CUTOFF_TIMING: 1,
    BreakClass.DUPLICATE: 1,
    BreakClass.SUMMARY_MISMATCH: 1,
}


def golden_lines(bank: str) -> list[tuple[str, str, str, int, int, str, date]]:
    """What every golden file lists: (VtCode, VoucherNo, serial, fen, ProState, payee account, pay date)."""
    serial = f"{bank}{CHECK_DATE:%Y%m%d}"
    return [
        ("5201", "5201450100000123", f"{serial}00000001", 12_500_000, 0, "6222020000000000123", CHECK_DATE),
        ("8202", "8202450100000456", f"{serial}00000002", 250_050, 0, "6222020000000000456", CHECK_DATE),
        ("2252", f"2252{serial}00000003", f"{serial}00000003", -2_500_000, 1, "6222020000000000123", CHECK_DATE),
        ("5201", "5201450100000124", f"{serial}00000004", 1_234_500, 2, "6217000000000000789", CHECK_DATE),
    ]


@pytest.mark.parametrize("code", list(GOLDEN))
def test_each_dialects_golden_statement_reads_in_its_declared_format(code: str) -> None:
    bank, name = GOLDEN[code]
    statement = open_statement(None, [DATA / name], code)
    lines = [
        (x.vt_code, x.voucher_no, x.serial, x.amount_fen, int(x.status), x.payee_acct_no, x.pay_date) for x in statement
    ]
    assert lines == golden_lines(bank)
    assert statement.check_date == CHECK_DATE
    assert statement.declared == statement.computed == Totals(4, 11_484_550)
    assert statement.findings == []


def test_every_registered_dialect_has_a_golden_statement() -> None:
    assert set(GOLDEN) == set(registry.DIALECTS)


@pytest.mark.parametrize(("code", "other"), [("ccb", "bocom"), ("bocom", "gxnx"), ("gxnx", "ccb"), ("icbc", "ccb")])
def test_a_file_read_in_another_banks_format_is_refused_naming_the_line(code: str, other: str) -> None:
    """The declared format matters: another bank's layout does not silently read a file."""
    with pytest.raises(StatementError, match=r"line \d+"):
        list(open_statement(None, [DATA / GOLDEN[code][1]], other))


def test_format_overrides_the_declaration(tmp_path: Path) -> None:
    """`--format` wins; `text` for a dialect without a text layout is the standard text layout."""
    standard_text = Path(__file__).parent.parent / "reconciliation" / "data" / "statement-standard.txt"
    assert len(list(open_statement("text", [standard_text], "icbc"))) == 4
    assert len(list(open_statement("text", [standard_text], None))) == 4
    assert len(list(open_statement("camt053", [DATA / "icbc-camt053.xml"], "ccb"))) == 4
    assert len(list(open_statement("text", [DATA / "ccb-fixed-gbk.txt"], "ccb"))) == 4
    with pytest.raises(ValueError, match="a camt053 statement is one file, not 2"):
        open_statement(None, [DATA / "icbc-camt053.xml"] * 2, "icbc")


# --- a simulated bank's end of day, through the store and `tgw reconcile` -------------------------------------


def _vouchers(n: int) -> list[Voucher]:
    return [
        dataclasses.replace(
            samples.direct_voucher(f"5201450100{i:06d}", (10_000 * i + 37 * i * i,)),
            payee_acct_no=f"62220200000{i:08d}",
        )
        for i in range(1, n + 1)
    ]


def settle_day(engine: Engine, bank: str, n: int, *, refused: int, returned: int) -> Ledger:
    """`n` vouchers submitted to `bank` and sent; the simulated bank's ledger pays them (refusing the first
    `refused`, returning the next `returned` later the same day); the store records its receipts and returns."""
    ledger = Ledger(bank)
    vouchers = _vouchers(n)
    now = NOW_NAIVE
    with transaction(engine) as conn:
        service.submit(conn, [(bank, v) for v in vouchers], "operator:test", now, NODE, [bank])
        items = service.claim_outbox(conn, bank, now, len(vouchers), "test-node", False)
        wires = {i.id: f"<first send of {i.msg_id}/>".encode() for i in items}
        service.mark_sent(conn, bank, wires, now, PaymentSettings())
        for i, v in enumerate(vouchers):
            outcome = ledger.pay(v, CHECK_DATE, refuse_reason="收款账户已冻结" if i < refused else None)
            receipt = Ledger.make_receipt(v, outcome)
            service.apply_receipt(conn, bank, receipt, f"R{i:08d}", now, f"bank:{bank}")
        for j, v in enumerate(vouchers[refused : refused + returned]):
            notice = ledger.return_payment(v.key, v.pay_amt_fen, CHECK_DATE, "收款人账户已销户")
            service.apply_return(conn, bank, notice, f"N{j:08d}", now + timedelta(minutes=5), f"bank:{bank}")
    return ledger


def _reconcile(
    capsys: pytest.CaptureFixture[str], config: Path, bank: str, files: list[Path]
) -> tuple[int, dict[str, Any]]:
    argv = ["reconcile", "--config", str(config), "--date", f"{CHECK_DATE:%Y%m%d}", "--bank", bank, "--json"]
    for f in files:
        argv += ["--statement", str(f)]
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return code, json.loads(captured.out)


@pytest.mark.parametrize("dialect", list(GOLDEN))
def test_a_simulated_banks_statement_file_reconciles_in_its_declared_format(
    dialect: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bank = dialect.upper()
    seed = random.randrange(2**31)  # named in every assertion below that depends on it
    cfg = create_instance(tmp_path / "instance", [(bank, dialect)], database=db_url)
    engine = create_engine_for(db_url)
    try:
        ledger = settle_day(engine, bank, 14, refused=2, returned=2)
    finally:
        engine.dispose()
    lines = ledger.statement_lines(CHECK_DATE)
    assert len(lines) == 16 and sorted({x.pro_state for x in lines}) == [0, 1, 2]
    source = registry.get(dialect).statement_format

    clean = statements.write(tmp_path / "clean.stmt", source, CHECK_DATE, lines, bank=bank, node=cfg.node)
    code, summary = _reconcile(capsys, cfg.path, bank, clean)
    assert (code, summary["breaks"], summary["open_breaks"]) == (0, {}, 0), summary
    assert summary["matched"] == 16
    assert summary["statement"] == {"count": 16, "amount_fen": sum(x.amt_fen for x in lines)}

    spoilt, injected = inject(lines, random.Random(seed), INJECTED, check_date=CHECK_DATE)
    declared = injected.declared(spoilt)
    files = statements.write(
        tmp_path / "spoilt.stmt", source, CHECK_DATE, spoilt, declared=(declared.count, declared.amount_fen), bank=bank
    )
    code, summary = _reconcile(capsys, cfg.path, bank, files)
    assert code == 1, f"seed {seed}"
    assert summary["breaks"] == injected.as_json() == {cls.value: n for cls, n in INJECTED.items()}, f"seed {seed}"


def test_a_4006_of_several_pages_is_written_and_read_page_by_page(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = create_instance(tmp_path / "instance", [("ABC", "standard")], database=db_url)
    engine = create_engine_for(db_url)
    try:
        ledger = settle_day(engine, "ABC", 9, refused=1, returned=1)
    finally:
        engine.dispose()
    source = registry.get("standard").statement_format
    lines = ledger.statement_lines(CHECK_DATE)
    pages = statements.write(tmp_path / "4006.xml", source, CHECK_DATE, lines, bank="ABC", page_size=4)
    assert [p.name for p in pages] == ["4006-p1.xml", "4006-p2.xml", "4006-p3.xml"]
    code, summary = _reconcile(capsys, cfg.path, "ABC", pages[::-1])  # pages in any order
    assert (code, summary["breaks"], summary["matched"]) == (0, {}, 10)
    argv = ["reconcile", "--config", str(cfg.path), "--date", f"{CHECK_DATE:%Y%m%d}", "--bank", "ABC"]
    assert cli.main([*argv, "--statement", str(pages[0]), "--statement", str(pages[1])]) == 2
    assert "pages missing: 3 of 3" in capsys.readouterr().err
