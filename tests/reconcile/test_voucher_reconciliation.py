"""A voucher's page says where reconciliation left it: reconciled by a run, in a break, or not yet reconciled."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from gateway.payments import queries
from gateway.reconcile.store_port import run_day
from gateway.store.db import transaction
from reconciliation.formats import STANDARD_TEXT
from reconciliation.model import BreakClass
from reconciliation.ports import TempFileScratch
from reconciliation.readers import read_text
from tests.gateway.conftest import NOW_NAIVE
from tests.reconcile.helpers import BANK, CHECK_DATE, seed_ledger, spoilt_statement, write_text


def _state(engine: Engine, key: object) -> dict[str, object]:
    with transaction(engine, read_only=True) as conn:
        found = queries.get_voucher(conn, key)  # type: ignore[arg-type]
    assert found is not None
    return found["reconciliation"]  # type: ignore[no-any-return]


def test_matched_vouchers_read_reconciled_and_broken_ones_break(db_engine: Engine, tmp_path: Path) -> None:
    vouchers = seed_ledger(db_engine, 8, failed=1, returned=0)
    before = {str(v.key): _state(db_engine, v.key) for v in vouchers}
    assert {s["state"] for s in before.values()} == {"NOT_RECONCILED"}

    lines, injected = spoilt_statement(db_engine, {BreakClass.AMOUNT_MISMATCH: 1})
    path = write_text(tmp_path / "s.txt", lines, injected.declared(lines))
    day = run_day(
        db_engine,
        BANK,
        CHECK_DATE,
        read_text(str(path), STANDARD_TEXT),
        scratch=TempFileScratch(str(tmp_path)),
        now=NOW_NAIVE,
    )
    (broken_key,) = injected.keys[BreakClass.AMOUNT_MISMATCH]
    after = {f"{v.vt_code}-{v.voucher_no}": (v, _state(db_engine, v.key)) for v in vouchers}
    broken = after[broken_key][1]
    assert broken["state"] == "BREAK"
    assert [(b["class"], b["state"], b["run_id"]) for b in broken["breaks"]] == [  # type: ignore[index]
        ("amount_mismatch", "OPEN", day.run_id)
    ]
    reconciled = [key for key, (_, s) in after.items() if s["state"] == "RECONCILED"]
    assert all(after[k][1]["run_id"] == day.run_id for k in reconciled)
    assert all(after[k][1]["check_date"] == CHECK_DATE.isoformat() for k in reconciled)
    # Every voucher but the broken one was linked, the failed one too (its refusal is on the statement).
    assert len(reconciled) == day.linked == len(vouchers) - 1
    assert broken_key not in reconciled
