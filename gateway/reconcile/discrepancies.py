"""The simulated banks' discrepancy plan: which discrepancies they inject into the statements they send.

A simulated bank (:mod:`simulators.bank`) imports nothing above `protocols/` and `banks/`; the spoiling itself
is :func:`reconciliation.inject.inject`, handed to the bank as a :data:`~simulators.bank.StatementSpoiler` made
here. `tgw simulate bank --discrepancies amount_mismatch=2,duplicate=1` and the tests use it.

Seeded: the lines of a check date are spoilt with `random.Random("<seed>:<check date>")`, so the same ledger
asked twice for the same date gives the same statement, and a run can be repeated from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import date

from protocols.messages import StatementDetail
from reconciliation.inject import inject
from reconciliation.model import BreakClass
from simulators.bank import SpoiltStatement, StatementSpoiler


def parse_counts(text: str) -> dict[BreakClass, int]:
    """`CLASS=N[,CLASS=N…]` (classes as in docs/reconciliation.md; `all=N` for every class, the summary at most
    once) as counts per class.

    Raises:
        ValueError: naming the part that is not `CLASS=N` with a known class and a count of 0 or more.
    """
    counts: dict[BreakClass, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, number = part.partition("=")
        name = name.strip()
        if not sep or not number.strip().isdigit():
            raise ValueError(f"{part!r} is not CLASS=N (N a count, 0 or more)")
        n = int(number)
        if name == "all":  # every class n times; the summary, which a statement has once, at most once
            counts.update(dict.fromkeys(BreakClass, n))
            counts[BreakClass.SUMMARY_MISMATCH] = min(n, 1)
            continue
        try:
            counts[BreakClass(name)] = n
        except ValueError:
            known = ", ".join(c.value for c in BreakClass)
            raise ValueError(f"no break class {name!r}; the classes are {known} (or all)") from None
        if name == BreakClass.SUMMARY_MISMATCH.value and n > 1:
            raise ValueError(f"{part!r}: a statement has one summary, summary_mismatch is 0 or 1")
    return counts


def spoiler(counts: Mapping[BreakClass, int], seed: int) -> StatementSpoiler:
    """A spoiler injecting `counts` discrepancies (per class) into each statement, seeded per check date."""
    wanted = dict(counts)

    def spoil(lines: list[StatementDetail], check_date: date) -> SpoiltStatement:
        rng = random.Random(f"{seed}:{check_date.isoformat()}")
        out, injected = inject(lines, rng, wanted, check_date=check_date)
        declared = injected.declared(out)
        return SpoiltStatement(out, (declared.count, declared.amount_fen), injected.as_json())

    return spoil
