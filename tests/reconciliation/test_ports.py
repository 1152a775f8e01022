"""The in-memory and temporary-file implementations of the ledger port."""

from __future__ import annotations

import random
from datetime import date

from reconciliation.model import Totals
from reconciliation.ports import InMemoryLedger, InMemorySink, TempFileScratch
from tests.reconciliation.conftest import BANK, CHECK_DATE, entry_of, ledger_of, make_lines


def test_the_in_memory_ledger_yields_key_order_and_control_totals() -> None:
    lines = make_lines(30, random.Random(3))
    port = InMemoryLedger()
    port.add(BANK, CHECK_DATE, [entry_of(x) for x in reversed(lines)])
    assert port.entries(BANK, CHECK_DATE) == ledger_of(lines)
    assert port.control_totals(BANK, CHECK_DATE) == Totals(30, sum(x.amt_fen for x in lines))
    assert port.entries(BANK, date(2026, 1, 1)) == [] and port.control_totals("CCB", CHECK_DATE) == Totals()
    port.set_control_totals(BANK, CHECK_DATE, Totals(1, 1))
    assert port.control_totals(BANK, CHECK_DATE) == Totals(1, 1)


def test_the_scratch_area_hands_out_fresh_sorters() -> None:
    scratch = TempFileScratch(run_records=2, fan_in=2)
    with scratch.sorter() as sorter:
        sorter.extend([("b",), ("a",), ("c",)])
        assert list(sorter.sorted()) == [("a",), ("b",), ("c",)]
    assert scratch.sorter() is not scratch.sorter()


def test_the_sink_keeps_what_it_is_given() -> None:
    sink = InMemorySink()
    entry = entry_of(make_lines(1, random.Random(1))[0])
    sink.reconciled([entry, entry])
    assert sink.reconciled_entries == [entry, entry] and sink.batches == 1 and sink.results == []
