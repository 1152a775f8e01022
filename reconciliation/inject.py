"""Injecting discrepancies of every break class into a bank statement, and saying exactly what was injected.

The simulated banks use this to spoil their end-of-day statements on purpose (`tgw demo --discrepancies`), and
the matcher's oracle test uses it the same way: whatever :func:`inject` reports in :class:`Injected`, the
matcher must report exactly, no more and no less, when the statement is reconciled against the ledger the
lines were true to.

How each class is made (each from a different line, so that no two discrepancies overlap):

================== ===================================================================================
class              what is done to the statement
================== ===================================================================================
missing_at_bank    a line is left out
missing_in_ledger  a line is added for a voucher the ledger does not have (fresh number, fresh serial)
status_mismatch    a paid line says failed, or a failed line says paid (`ProState` 0 ↔ 2)
amount_mismatch    a line's amount is off by up to 100 yuan (its sign kept)
payee_mismatch     the last digit of a line's payee account changes
cutoff_timing      a line's pay date moves one day later (or earlier): paid around midnight
duplicate          a line appears twice, the copy with a fresh serial (the bank paid it twice)
summary_mismatch   the declared total (`AllAmt`) is off by up to 100 yuan (at most one per statement)
================== ===================================================================================

Randomness comes from the caller's generator (`random.Random(seed)` in practice: only `randrange` is used),
so a statement is spoilt the same way every time for the same seed. Nothing here reads a clock or a global
random source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Final, Protocol

from protocols.messages import StatementDetail
from reconciliation.model import BreakClass, Totals

#: Classes that take a line of the statement each (summary_mismatch takes none; missing_in_ledger adds one).
_ON_LINES: Final = (
    BreakClass.STATUS_MISMATCH,  # first: only paid and failed lines qualify
    BreakClass.MISSING_AT_BANK,
    BreakClass.AMOUNT_MISMATCH,
    BreakClass.PAYEE_MISMATCH,
    BreakClass.CUTOFF_TIMING,
    BreakClass.DUPLICATE,
)
_MAX_OFF_FEN: Final = 100_00
_INVENTED_VT_CODE: Final = "5201"


class Rng(Protocol):
    """The part of :class:`random.Random` this module uses."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int:
        """A random integer in ``range(start, stop, step)``."""
        ...


@dataclass(frozen=True, slots=True)
class Injected:
    """What :func:`inject` did.

    Attributes:
        counts: Discrepancies injected per class (every class present, zero when none).
        keys: The break key (`Break.key`: `VtCode-VoucherNo`, or `statement` for the summary) of each
            discrepancy, per class, sorted.
        summary_delta: What to add to the true count and total of the returned lines when declaring the
            statement's `AllNum` and `AllAmt` (:meth:`declared`).
        next_day: Lines that a faithful bank lists again on the next day's statement: the cut-off timing lines
            moved to the next day, as booked then. Listing them lets the next run close those breaks.
    """

    counts: Mapping[BreakClass, int]
    keys: Mapping[BreakClass, tuple[str, ...]]
    summary_delta: Totals
    next_day: tuple[StatementDetail, ...]

    def declared(self, lines: Sequence[StatementDetail]) -> Totals:
        """The `AllNum` and `AllAmt` to declare for `lines` (their true totals, spoilt if asked)."""
        return Totals(len(lines), sum(line.amt_fen for line in lines)) + self.summary_delta

    def as_json(self) -> dict[str, int]:
        """The counts keyed by class name, for the demo's summary (`{"amount_mismatch": 2, …}`)."""
        return {cls.value: n for cls, n in self.counts.items()}


def inject(
    lines: Sequence[StatementDetail],
    rng: Rng,
    counts_by_class: Mapping[BreakClass, int],
    *,
    check_date: date | None = None,
) -> tuple[list[StatementDetail], Injected]:
    """Spoil a statement with the asked number of discrepancies of each class.

    Args:
        lines: The true statement: lines the ledger agrees with, each voucher key and serial once, each with
            a voucher number.
        rng: The source of randomness.
        counts_by_class: How many of each class (missing classes: none). `summary_mismatch` is 0 or 1.
        check_date: The statement's date, for added lines (default: the first line's pay date).

    Returns:
        The spoilt lines (in the original order, added lines at random places) and what was injected.

    Raises:
        ValueError: a negative count, more than one summary mismatch, lines that repeat a key or a serial or
            lack a voucher number, or not enough suitable lines for the counts asked.
    """
    counts = dict.fromkeys(BreakClass, 0)
    for cls, n in counts_by_class.items():
        if n < 0:
            raise ValueError(f"a negative count for {cls.value}")
        counts[BreakClass(cls)] = n
    if counts[BreakClass.SUMMARY_MISMATCH] > 1:
        raise ValueError("a statement has one summary: at most one summary_mismatch")
    _check_unique(lines)
    if check_date is None and counts[BreakClass.MISSING_IN_LEDGER]:
        if not lines:
            raise ValueError("adding a line to an empty statement needs its check_date")
        check_date = lines[0].x_pay_date

    chosen = _choose(lines, counts, rng)
    keys: dict[BreakClass, list[str]] = {cls: [] for cls in BreakClass}
    used_serials = {line.x_agent_business_no for line in lines}
    used_vouchers = {line.voucher_no for line in lines if line.vt_code == _INVENTED_VT_CODE}
    out: list[StatementDetail] = []
    extra: list[StatementDetail] = []
    next_day: list[StatementDetail] = []
    for index, line in enumerate(lines):
        spoil = chosen.get(index)
        if spoil is None:
            out.append(line)
            continue
        keys[spoil].append(f"{line.vt_code}-{line.voucher_no}")
        if spoil is BreakClass.MISSING_AT_BANK:
            continue
        if spoil is BreakClass.STATUS_MISMATCH:
            line = replace(line, pro_state=2 if line.pro_state == 0 else 0)
        elif spoil is BreakClass.AMOUNT_MISMATCH:
            off = rng.randrange(1, _MAX_OFF_FEN + 1)
            line = replace(line, amt_fen=line.amt_fen + (off if line.amt_fen > 0 else -off))
        elif spoil is BreakClass.PAYEE_MISMATCH:
            line = replace(line, payee_acct_no=_other_last_digit(line.payee_acct_no, rng))
        elif spoil is BreakClass.CUTOFF_TIMING:
            later = rng.randrange(2) == 0
            line = replace(line, x_pay_date=line.x_pay_date + timedelta(days=1 if later else -1))
            if later:
                next_day.append(line)
        else:  # duplicate: the bank paid it twice, under a second serial
            serial = _fresh(line.x_agent_business_no, used_serials, rng)
            extra.append(replace(line, x_agent_business_no=serial))
        out.append(line)
    for _ in range(counts[BreakClass.MISSING_IN_LEDGER]):
        template = lines[rng.randrange(len(lines))] if lines else None
        added = _invented(template, check_date, used_vouchers, used_serials, rng)
        keys[BreakClass.MISSING_IN_LEDGER].append(f"{added.vt_code}-{added.voucher_no}")
        extra.append(added)
    for line in extra:
        out.insert(rng.randrange(len(out) + 1), line)
    delta = Totals()
    if counts[BreakClass.SUMMARY_MISMATCH]:
        delta = Totals(0, rng.randrange(1, _MAX_OFF_FEN + 1))
        keys[BreakClass.SUMMARY_MISMATCH].append("statement")
    injected = Injected(
        counts=counts,
        keys={cls: tuple(sorted(found)) for cls, found in keys.items()},
        summary_delta=delta,
        next_day=tuple(next_day),
    )
    return out, injected


def _check_unique(lines: Sequence[StatementDetail]) -> None:
    keys = {(line.vt_code, line.voucher_no) for line in lines}
    serials = {line.x_agent_business_no for line in lines}
    if len(keys) != len(lines) or len(serials) != len(lines):
        raise ValueError("the lines must name each voucher and each serial once")
    if any(not line.voucher_no for line in lines):
        raise ValueError("every line must carry its voucher number")


def _choose(lines: Sequence[StatementDetail], counts: dict[BreakClass, int], rng: Rng) -> dict[int, BreakClass]:
    """Distinct lines for the classes that spoil a line: index -> class."""
    order = list(range(len(lines)))
    for i in range(len(order) - 1, 0, -1):  # Fisher–Yates with the caller's generator
        j = rng.randrange(i + 1)
        order[i], order[j] = order[j], order[i]
    chosen: dict[int, BreakClass] = {}
    for cls in _ON_LINES:
        wanted = counts[cls]
        for index in order:
            if not wanted:
                break
            if index in chosen or (cls is BreakClass.STATUS_MISMATCH and lines[index].pro_state not in (0, 2)):
                continue
            chosen[index] = cls
            wanted -= 1
        if wanted:
            raise ValueError(f"not enough suitable lines for {counts[cls]} × {cls.value}")
    return chosen


def _other_last_digit(account: str, rng: Rng) -> str:
    last = account[-1:]
    digits = [d for d in "0123456789" if d != last]
    return account[:-1] + digits[rng.randrange(len(digits))]


def _fresh(model: str, used: set[str], rng: Rng) -> str:
    """A new string like `model`, not in `used` (and added to it).

    First its last four characters are replaced by random digits (the result looks like its neighbours); if
    that keeps colliding (a dense range of serials), a dash and six random digits are appended instead.
    """
    stem = model[:-4] if len(model) > 4 else model
    for attempt in range(40):
        if attempt < 20:
            candidate = f"{stem}{rng.randrange(10_000):04d}"
        else:
            candidate = f"{model[:35]}-{rng.randrange(1_000_000):06d}"
        if candidate not in used:
            used.add(candidate)
            return candidate
    raise ValueError(f"could not invent an identifier like {model!r}")  # pragma: no cover (a million to one)


def _invented(
    template: StatementDetail | None,
    check_date: date | None,
    used_vouchers: set[str],
    used_serials: set[str],
    rng: Rng,
) -> StatementDetail:
    """A paid 5201 line for a voucher nobody sent, in the shape of `template`."""
    assert check_date is not None
    voucher_no = _fresh(template.voucher_no if template else "5201000000000000", used_vouchers, rng)
    payee = template.payee_acct_no if template else "6222020000000000000"
    return StatementDetail(
        vt_code=_INVENTED_VT_CODE,
        voucher_no=voucher_no,
        x_agent_business_no=_fresh(template.x_agent_business_no if template else "BANK00000000", used_serials, rng),
        x_pay_date=check_date,
        amt_fen=rng.randrange(1, 1_000_000_00),
        pro_state=0,
        payee_acct_no=_other_last_digit(payee, rng),
    )
