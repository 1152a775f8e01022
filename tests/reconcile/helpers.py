"""A small ledger made through the payment service, and a statement file written from it."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, select

from gateway.config import PaymentSettings
from gateway.payments import service
from gateway.reconcile.store_port import DayRun, StoreLedger, run_day
from gateway.store.db import transaction
from gateway.store.tables import recon_breaks
from protocols import samples
from protocols.messages import Receipt, ReturnNotice, StatementDetail, Voucher
from reconciliation.formats import STANDARD_TEXT
from reconciliation.inject import Injected, inject
from reconciliation.model import BreakClass, Totals
from reconciliation.ports import TempFileScratch
from reconciliation.readers import read_text
from tests.gateway.conftest import NODE, NOW_NAIVE, WORK_DATE

BANK: Final = "ICBC"
CHECK_DATE: Final = WORK_DATE


def direct(n: int, amount_fen: int) -> Voucher:
    return samples.direct_voucher(f"5201450100{n:06d}", (amount_fen,))


def receipt_for(v: Voucher, paid: bool = True) -> Receipt:
    return Receipt(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code=v.vt_code,
        voucher_no=v.voucher_no,
        pay_amt_fen=v.pay_amt_fen,
        x_pay_date=CHECK_DATE,
        x_agent_business_no=f"{BANK}{v.voucher_no}",
        x_pay_amt_fen=v.pay_amt_fen if paid else 0,
        x_payee_acct_no=v.payee_acct_no,
        x_payee_acct_name=v.payee_acct_name,
        x_result="S" if paid else "F",
        x_add_word=None if paid else "收款账户已销户",
    )


def seed_ledger(engine: Engine, n: int = 12, *, failed: int = 2, returned: int = 1) -> list[Voucher]:
    """`n` vouchers of BANK submitted and settled on CHECK_DATE: `failed` refused, `returned` paid then returned."""
    vouchers = [direct(i + 1, 10_000 * (i + 1) + 37) for i in range(n)]
    now = NOW_NAIVE
    with transaction(engine) as conn:
        service.submit(conn, [(BANK, v) for v in vouchers], "operator:test", now, NODE, [BANK])
        items = service.claim_outbox(conn, BANK, now, len(vouchers), "test-node", False)
        wires = {i.id: f"<first send of {i.msg_id}/>".encode() for i in items}
        service.mark_sent(conn, BANK, wires, now, PaymentSettings())
        for i, v in enumerate(vouchers):
            service.apply_receipt(conn, BANK, receipt_for(v, paid=i >= failed), f"R{i:08d}", now, f"bank:{BANK}")
        for j, v in enumerate(vouchers[failed : failed + returned]):
            notice = ReturnNotice(
                adm_div_code=v.adm_div_code,
                st_year=v.st_year,
                vt_code="2252",
                voucher_no=f"2252450100{j:06d}",
                ori_vt_code=v.vt_code,
                original_voucher_no=v.voucher_no,
                pay_amt_fen=-v.pay_amt_fen,
                x_pay_date=CHECK_DATE,
                x_agent_business_no=f"{BANK}R{j:06d}",
                remark="收款人账户已销户",
            )
            service.apply_return(conn, BANK, notice, f"N{j:08d}", now + timedelta(minutes=5), f"bank:{BANK}")
    return vouchers


def true_statement(engine: Engine) -> list[StatementDetail]:
    """What a faithful bank lists for CHECK_DATE: exactly the store's ledger."""
    return [
        StatementDetail(
            vt_code=e.vt_code,
            voucher_no=e.voucher_no,
            x_agent_business_no=e.serial,
            x_pay_date=e.pay_date,
            amt_fen=e.amount_fen,
            pro_state=int(e.status),
            payee_acct_no=e.payee_acct_no,
        )
        for e in StoreLedger(engine).entries(BANK, CHECK_DATE)
    ]


def spoilt_statement(
    engine: Engine, counts: Mapping[BreakClass, int], seed: int = 7
) -> tuple[list[StatementDetail], Injected]:
    return inject(true_statement(engine), random.Random(seed), counts, check_date=CHECK_DATE)


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def write_text(
    path: Path, lines: list[StatementDetail], declared: Totals | None = None, day: date = CHECK_DATE
) -> Path:
    """The statement in `formats.STANDARD_TEXT`."""
    declared = declared or Totals(len(lines), sum(x.amt_fen for x in lines))
    with path.open("w", encoding="utf-8") as file:
        file.write(f"H|{day:%Y%m%d}|{declared.count}|{_yuan(declared.amount_fen)}\n")
        for x in lines:
            file.write(
                f"{x.vt_code}|{x.voucher_no}|{x.x_agent_business_no}|{x.x_pay_date:%Y%m%d}|{_yuan(x.amt_fen)}"
                f"|{x.pro_state}|{x.payee_acct_no}\n"
            )
    return path


def write_4006(path: Path, lines: list[StatementDetail], day: date = CHECK_DATE) -> Path:
    """The statement as one bare 4006 `Statement` page."""
    total = sum(x.amt_fen for x in lines)
    details = "".join(
        f"<Detail><VtCode>{x.vt_code}</VtCode><VoucherNo>{x.voucher_no}</VoucherNo>"
        f"<XAgentBusinessNo>{x.x_agent_business_no}</XAgentBusinessNo><XPayDate>{x.x_pay_date:%Y%m%d}</XPayDate>"
        f"<Amt>{_yuan(x.amt_fen)}</Amt><ProState>{x.pro_state}</ProState><PayeeAcctNo>{x.payee_acct_no}</PayeeAcctNo>"
        "</Detail>\n"
        for x in lines
    )
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Statement><CheckDate>{day:%Y%m%d}</CheckDate>'
        f"<AllNum>{len(lines)}</AllNum><AllAmt>{_yuan(total)}</AllAmt><ChildPackNum>1</ChildPackNum>"
        f"<CurPackNo>1</CurPackNo><DetailList>\n{details}</DetailList></Statement>\n",
        encoding="utf-8",
    )
    return path


# --- the resolution workflow (tests/reconcile/test_resolution.py, test_api.py, test_breaks_cli.py) -----------------

#: How :func:`workflow_statement` spoils the true statement of :func:`seed_ledger`'s vouchers (n=8, failed=1,
#: returned=1): voucher 0 failed but the bank says paid; voucher 2 paid but the bank says failed; voucher 3 is
#: left out; voucher 4's amount is off; a line for a voucher the gateway does not hold is added; the declared
#: total is off (a summary mismatch).
WORKFLOW_BREAKS: Final = {
    BreakClass.STATUS_MISMATCH: 2,
    BreakClass.MISSING_AT_BANK: 1,
    BreakClass.AMOUNT_MISMATCH: 1,
    BreakClass.MISSING_IN_LEDGER: 1,
    BreakClass.SUMMARY_MISMATCH: 1,
}


def workflow_statement(engine: Engine, vouchers: list[Voucher]) -> tuple[list[StatementDetail], Totals]:
    """The statement of :data:`WORKFLOW_BREAKS` for :func:`seed_ledger` (n=8, failed=1, returned=1)."""
    lines = []
    numbers = {v.voucher_no: i for i, v in enumerate(vouchers)}
    for line in true_statement(engine):
        i = numbers.get(line.voucher_no)
        if i == 0:
            line = replace(line, pro_state=0)
        elif i == 2:
            line = replace(line, pro_state=2)
        elif i == 3:
            continue
        elif i == 4:
            line = replace(line, amt_fen=line.amt_fen - 1_00)
        lines.append(line)
    lines.append(
        StatementDetail(
            vt_code="5201",
            voucher_no="5201450199999999",
            x_agent_business_no=f"{BANK}X0001",
            x_pay_date=CHECK_DATE,
            amt_fen=4_321_00,
            pro_state=0,
            payee_acct_no="6222000000000009",
        )
    )
    return lines, Totals(len(lines), sum(x.amt_fen for x in lines) + 10_00)


def run_file(engine: Engine, path: Path, day: date = CHECK_DATE, *, now: datetime = NOW_NAIVE) -> DayRun:
    """Reconcile a text statement file for `day` (replacing an earlier run of the date)."""
    return run_day(
        engine, BANK, day, read_text(str(path), STANDARD_TEXT), scratch=TempFileScratch(str(path.parent)), now=now
    )


def break_ids(engine: Engine, run_id: int | None = None) -> dict[tuple[str, str], int]:
    """`(class, key) → id` of the stored breaks (of one run)."""
    b = recon_breaks.c
    query = select(b.id, b.break_class, b.break_key)
    if run_id is not None:
        query = query.where(b.run_id == run_id)
    with transaction(engine, read_only=True) as conn:
        return {(r.break_class, r.break_key): r.id for r in conn.execute(query)}


def break_row(engine: Engine, break_id: int) -> dict[str, Any]:
    with transaction(engine, read_only=True) as conn:
        return dict(conn.execute(select(recon_breaks).where(recon_breaks.c.id == break_id)).mappings().one())


def key_of(v: Voucher) -> str:
    """The break key of a voucher (`Break.key`)."""
    return f"{v.vt_code}-{v.voucher_no}"
