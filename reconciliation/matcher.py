"""The matcher: a pure, streaming merge of the ledger and a statement into matches and classified breaks.

:func:`reconcile` reads the statement once into the scratch area sorted by match key (external sort, memory
flat), then merges it with the ledger, which the port yields already in key order:

1. **By voucher key** (`VtCode` + `VoucherNo`). Each pair is compared field by field: status, amount, payee
   account, pay date. Several lines or entries under one key are paired by bank serial first, then in order;
   what is left over is a duplicate (or, for a key only one side holds, one line goes on to step 2 and the
   rest are duplicates).
2. **By bank serial** (`XAgentBusinessNo`), for what step 1 left on either side: statement lines without a
   voucher number, or whose voucher number the ledger does not know, against ledger entries the statement did
   not list under their key. The leftovers are staged again, sorted by serial, and merged the same way.
3. What is still one-sided is classified: a ledger entry is *missing at the bank*, or a *cut-off timing*
   difference when the bank dated it a day before or after the check date; a statement line is *missing in
   the ledger*, unless it clears a timing break carried over from an earlier run.
4. **Summary checks**: the statement's declared count and total against its details (and, for camt.053, its
   balances), and the ledger's control totals against the entries streamed.

Memory holds a chunk of each side, a batch of matched entries for the sink, and the breaks (capped by
:attr:`MatchLimits.max_breaks`); it does not grow with the statement. The class definitions, with the
cut-off window, are in docs/reconciliation.md; :func:`carry_over` carries open breaks from run to run.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from itertools import chain, compress, count, islice
from operator import ge, itemgetter, ne
from typing import Any, Final

from protocols.money import format_amount_fen, format_date8
from reconciliation.errors import LedgerError, StatementError, TooManyBreaks
from reconciliation.extsort import ExternalSorter
from reconciliation.model import (
    CUTOFF_WINDOW_DAYS,
    KEY_SEPARATOR,
    Break,
    BreakClass,
    LedgerEntry,
    RunResult,
    Side,
    Status,
    Totals,
    match_key,
)
from reconciliation.ports import LedgerPort, ResultSink, ScratchArea, Sorter
from reconciliation.readers.base import StatementStream

#: Greater than every match key: keys are printable text, and U+10FFFF is not printable.
_END: Final = "\U0010ffff"
_CODE: Final = {Status.PAID: 0, Status.RETURNED: 1, Status.FAILED: 2}
_STATUS: Final = (Status.PAID, Status.RETURNED, Status.FAILED)
_CLASS_ORDER: Final = {c: i for i, c in enumerate(BreakClass)}

# A staged statement record: (key, serial, amount_fen, status code, payee, day ordinal, position, vt_code if
# the line has no voucher number else ""). Leftovers staged by serial put the serial first and the key second.
_Rec = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class MatchLimits:
    """Caps of one run.

    Attributes:
        max_breaks: Most breaks before the run gives up (:class:`~reconciliation.errors.TooManyBreaks`): a
            statement with more is almost certainly for another bank or date, and a report of a million
            breaks helps nobody.
        batch_entries: Matched entries handed to the sink at a time.
        chunk_records: Entries and records compared at once on the fast path of the merge.
    """

    max_breaks: int = 100_000
    batch_entries: int = 10_000
    chunk_records: int = 256

    def __post_init__(self) -> None:
        if min(self.max_breaks, self.batch_entries, self.chunk_records) < 1:
            raise ValueError(f"match limits must be positive: {self!r}")


DEFAULT_MATCH_LIMITS: Final = MatchLimits()


@dataclass(frozen=True, slots=True)
class CarryOver:
    """The open breaks after a run, and the earlier ones it closed.

    Attributes:
        open: Every break still open: earlier ones with their age brought up to date, then this run's new ones
            (age 0). A break found again is kept once, with its first date.
        closed: Earlier breaks this run closed automatically (timing breaks its statement cleared).
    """

    open: tuple[Break, ...]
    closed: tuple[Break, ...]


def reconcile_day(
    port: LedgerPort,
    statement: StatementStream,
    *,
    bank: str,
    check_date: date,
    scratch: ScratchArea,
    sink: ResultSink | None = None,
    carried: Iterable[Break] = (),
    limits: MatchLimits = DEFAULT_MATCH_LIMITS,
) -> RunResult:
    """Reconcile a bank's statement against the ledger port's entries for `check_date` (see :func:`reconcile`)."""
    return reconcile(
        port.entries(bank, check_date),
        statement,
        bank=bank,
        check_date=check_date,
        scratch=scratch,
        sink=sink,
        carried=carried,
        ledger_control=port.control_totals(bank, check_date),
        limits=limits,
    )


def reconcile(
    ledger: Iterable[LedgerEntry],
    statement: StatementStream,
    *,
    bank: str,
    check_date: date,
    scratch: ScratchArea,
    sink: ResultSink | None = None,
    carried: Iterable[Break] = (),
    ledger_control: Totals | None = None,
    limits: MatchLimits = DEFAULT_MATCH_LIMITS,
) -> RunResult:
    """Match the ledger against a statement and classify every difference.

    Args:
        ledger: The ledger's entries for the bank and check date, in key order (:mod:`reconciliation.ports`).
        statement: The statement, not yet read.
        bank: The bank code, for the result.
        check_date: The check date.
        scratch: Where the statement is staged.
        sink: Receives matched entries in batches, then the result.
        carried: Open breaks of earlier runs; the cut-off timing ones among them are closed when this
            statement lists their voucher with the same amount, status and payee.
        ledger_control: The ledger's control totals, computed independently of `ledger`, if available.
        limits: Caps.

    Returns:
        The run's counts, totals and breaks (all of age 0), and the carried breaks it cleared.

    Raises:
        StatementError: the statement cannot be read, or declares another check date.
        LedgerError: the ledger is not in key order, or has an entry without a voucher number.
        TooManyBreaks: more breaks than `limits.max_breaks`.
    """
    run = _Run(statement, check_date, scratch, sink, carried, limits)
    try:
        with _fewer_collections():
            run.stage()
            run.merge(iter(ledger))
            run.merge_leftovers()
    finally:
        run.close()
    run.summary_checks(ledger_control)
    result = RunResult(
        bank=bank,
        check_date=check_date,
        source=f"{statement.format_name} {statement.source}",
        ledger=Totals(run.ledger_count, run.ledger_fen),
        statement=Totals(run.statement_count, run.statement_fen),
        declared=statement.declared,
        matched=run.matched,
        matched_by_serial=run.matched_by_serial,
        breaks=tuple(sorted(run.breaks, key=_break_order)),
        cleared=tuple(run.cleared),
        carried_in=run.carried_in,
    )
    if sink is not None:
        sink.finish(result)
    return result


def carry_over(previous_open: Iterable[Break], result: RunResult) -> CarryOver:
    """The open breaks after `result`: earlier open breaks aged or closed, plus the run's new ones.

    Args:
        previous_open: The breaks still open before this run (from runs of earlier check dates).
        result: This run's result; its `cleared` breaks are closed.

    Returns:
        The open and the closed breaks. An earlier break's `age_days` becomes the days from its first
        check date to this run's; a break this run found again keeps its first date and appears once.
    """
    cleared = {(b.identity, b.since) for b in result.cleared}
    still_open: list[Break] = []
    closed: list[Break] = []
    seen = set()
    for b in previous_open:
        if (b.identity, b.since) in cleared:
            closed.append(b)
            continue
        since = b.since
        still_open.append(dataclasses.replace(b, first_check_date=since, age_days=(result.check_date - since).days))
        seen.add(b.identity)
    fresh = [b for b in result.breaks if b.identity not in seen]
    return CarryOver(open=tuple(still_open + fresh), closed=tuple(closed))


#: The cyclic garbage collector's first threshold while a run streams its records (Python's default is 700).
GC_YOUNG_THRESHOLD: Final = 50_000
_gc_lock = threading.Lock()
_gc_runs = 0
_gc_saved: tuple[int, int, int] | None = None


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Let the cyclic garbage collector run less often while records stream through (restored after).

    A run allocates some three million tuples and lists per million lines, none of them part of a reference
    cycle (reference counting frees each one), yet every 700 allocations start a collection that walks the
    young objects, most of them still alive in a buffer, and so promotes them to be walked again by the older
    generations: about a sixth of a run's time. With the first threshold at :data:`GC_YOUNG_THRESHOLD`
    most of them are freed before a collection sees them. The collector stays on (cycles made meanwhile by
    other threads are still collected, a little later), a threshold set higher or collection switched off
    is left alone, and the setting is the process's, so concurrent runs share it: the last one to finish
    restores what the first one found.
    """
    global _gc_runs, _gc_saved
    with _gc_lock:
        if _gc_runs == 0:
            saved = gc.get_threshold()
            if 0 < saved[0] < GC_YOUNG_THRESHOLD:
                _gc_saved = saved
                gc.set_threshold(GC_YOUNG_THRESHOLD, *saved[1:])
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0 and _gc_saved is not None:
                if gc.get_threshold()[0] == GC_YOUNG_THRESHOLD:  # unless someone changed it meanwhile
                    gc.set_threshold(*_gc_saved)
                _gc_saved = None


def _break_order(b: Break) -> tuple[str, int, str]:
    return (b.match_key or b.serial or b.scope, _CLASS_ORDER[b.break_class], b.serial)


class _Run:
    """The state of one reconciliation run (kept in one object so that the inner loop can use locals)."""

    def __init__(
        self,
        statement: StatementStream,
        check_date: date,
        scratch: ScratchArea,
        sink: ResultSink | None,
        carried: Iterable[Break],
        limits: MatchLimits,
    ) -> None:
        self.statement = statement
        self.check_date = check_date
        self.check_day = check_date.toordinal()
        self.sink = sink
        self.limits = limits
        self.carried: dict[str, list[Break]] = {}
        for b in carried:
            if b.break_class is BreakClass.CUTOFF_TIMING and b.voucher_no:
                self.carried.setdefault(b.match_key, []).append(b)
        self.breaks: list[Break] = []
        self.cleared: list[Break] = []
        self.carried_in = Totals()
        self.matched = 0
        self.matched_by_serial = 0
        self.ledger_count = 0
        self.ledger_fen = 0
        self.statement_count = 0
        self.statement_fen = 0
        self.batch: list[LedgerEntry] = []
        self.staged = scratch.sorter()
        self.left_ledger = scratch.sorter()
        self.left_statement = scratch.sorter()

    def close(self) -> None:
        self.staged.close()
        self.left_ledger.close()
        self.left_statement.close()

    # --- phase 1: stage the statement by key ------------------------------------------------------------------

    def stage(self) -> None:
        self.staged.extend(chain.from_iterable(self.statement.record_blocks()))
        computed = self.statement.computed
        self.statement_count = computed.count
        self.statement_fen = computed.amount_fen
        declared_date = self.statement.check_date
        if declared_date is not None and declared_date != self.check_date:
            raise StatementError(
                f"the statement is for {format_date8(declared_date)}, not {format_date8(self.check_date)}",
                source=self.statement.source,
            )

    # --- phase 2: merge by key --------------------------------------------------------------------------------

    def merge(self, entries: Iterator[LedgerEntry]) -> None:
        """Merge the ledger with the staged statement by key.

        Both sides are read in chunks. Where a chunk of ledger entries and the next statement records carry
        the same keys, one each, with equal values (nearly everywhere), :meth:`_agreeing` accepts the whole
        stretch with a few calls that loop in C; the first key that does not agree, and every key group, goes
        through :meth:`_step`, one key at a time.
        """
        chunk = self.limits.chunk_records
        ledger = _Feed(iter(lambda: list(islice(entries, chunk)), []))
        statement = _Feed(_sorted_blocks(self.staged, chunk))
        while (s := statement.peek()) is not None and s[0] == "":  # lines without a voucher number sort first
            self._statement_leftover(statement.take())
        previous = ""
        while True:
            n = min(chunk, ledger.fill(chunk + 1), statement.fill(chunk + 1))
            accepted = self._agreeing(ledger, statement, n, previous) if n else 0
            if accepted:
                previous = ledger.items[ledger.i + accepted - 1].vt_code + KEY_SEPARATOR
                previous += ledger.items[ledger.i + accepted - 1].voucher_no
                ledger.i += accepted
                statement.i += accepted
                if accepted == n:
                    continue
            if ledger.peek() is None and statement.peek() is None:
                break
            previous = self._step(ledger, statement, previous)

    def _agreeing(self, ledger: _Feed, statement: _Feed, n: int, previous: str) -> int:
        """How many of the next `n` entries and records pair off one to one and agree; accepts them."""
        entries = ledger.items[ledger.i : ledger.i + n]
        records = statement.items[statement.i : statement.i + n]
        voucher_nos = list(map(_VOUCHER_NO, entries))
        if "" in voucher_nos:
            return 0
        theirs = list(map(_KEY, records))
        # The keys agree when the ledger's VtCode, VoucherNo, VtCode, ... joined by the separator is the
        # statement's keys joined by it, and holds 2n - 1 separators: then no ledger field holds one, and each
        # statement key exactly one, so the pieces pair off. Two joins instead of a new string per entry.
        fields = [""] * (2 * n)
        fields[::2] = map(_VT_CODE, entries)
        fields[1::2] = voucher_nos
        joined = KEY_SEPARATOR.join(fields)
        if joined == KEY_SEPARATOR.join(theirs) and joined.count(KEY_SEPARATOR) == 2 * n - 1:
            keys = theirs
        else:  # KEY_SEPARATOR.join((vt_code, voucher_no)) is match_key(): one new string per entry, not two
            keys = list(map(KEY_SEPARATOR.join, zip(map(_VT_CODE, entries), voucher_nos, strict=True)))
        if not keys[0] > previous:
            return 0
        amounts = list(map(_AMOUNT, entries))
        # Column by column, each side a list of values it already holds (no tuple per entry or record).
        columns = (
            (keys, theirs),
            (amounts, list(map(_S_AMOUNT, records))),
            (list(map(_STATE, entries)), list(map(_S_CODE, records))),  # IntEnum == int
            (list(map(_PAYEE, entries)), list(map(_S_PAYEE, records))),
            (list(map(date.toordinal, map(_PAY_DATE, entries))), list(map(_S_DAY, records))),
        )
        if all(ours == theirs for ours, theirs in columns):
            m = n  # the statement's keys are sorted, so equal keys are in order too
        else:
            m = min(
                _first_true(map(ge, keys, keys[1:]), n),  # a repeated key (or disorder): its group goes to _step
                *(_first_true(map(ne, ours, theirs), n) for ours, theirs in columns),
            )
        # The last key accepted must not continue past the stretch on either side.
        while m:
            last = keys[m - 1]
            after = ledger.i + m
            if after < len(ledger.items):
                e = ledger.items[after]
                if e.vt_code + KEY_SEPARATOR + e.voucher_no == last:
                    m -= 1
                    continue
            after = statement.i + m
            if after < len(statement.items) and statement.items[after][0] == last:
                m -= 1
                continue
            break
        if not m:
            return 0
        self.matched += m
        self.ledger_count += m
        self.ledger_fen += sum(amounts[:m])
        self.batch += entries[:m]
        if len(self.batch) >= self.limits.batch_entries:
            self._flush()
        if self.carried:
            for key in self.carried.keys() & set(keys[:m]):
                self._clear(key, records[keys.index(key)])
        return m

    def _step(self, ledger: _Feed, statement: _Feed, previous: str) -> str:
        """Match the next key one item at a time; returns the last ledger key seen."""
        e = ledger.peek()
        s = statement.peek()
        ek = _END if e is None else self._ledger_key(e, previous)
        sk = _END if s is None else s[0]
        key = min(ek, sk)
        lg: list[LedgerEntry] = []
        while ek == key:
            lg.append(ledger.take())
            self.ledger_count += 1
            self.ledger_fen += lg[-1].amount_fen
            e = ledger.peek()
            ek = _END if e is None else self._ledger_key(e, key)
        sg: list[_Rec] = []
        while sk == key:
            sg.append(statement.take())
            s = statement.peek()
            sk = _END if s is None else s[0]
        if not sg:
            self._ledger_group(lg)
        elif not lg:
            self._statement_leftover(sg[0])
            for extra in sg[1:]:
                self._add(self._bank_break(BreakClass.DUPLICATE, extra, None, "listed more than once"))
        elif len(lg) == 1 and len(sg) == 1:
            self.matched += self._pair(lg[0], sg[0], by_serial=False)
        else:
            self.matched += self._group(lg, sg)
        return key if lg else previous

    def _ledger_key(self, e: LedgerEntry, previous: str) -> str:
        """The key of a ledger entry, checking the port's contract (key order, a voucher number)."""
        if not e[3]:
            raise LedgerError(f"ledger entry {e.key} has no voucher number")
        key = e[2] + KEY_SEPARATOR + e[3]
        if key < previous or key >= _END:
            raise LedgerError(
                f"ledger entries are not in key order: {e.vt_code}-{e.voucher_no} after "
                f"{previous.replace(KEY_SEPARATOR, '-')} (ORDER BY vt_code, voucher_no in the C collation)"
            )
        return key

    def _flush(self, *, all_of_it: bool = False) -> None:
        """Hand matched entries to the sink in batches of `batch_entries` (the rest too, if `all_of_it`)."""
        size = self.limits.batch_entries
        batch = self.batch
        sent = 0
        while len(batch) - sent >= size or (all_of_it and sent < len(batch)):
            if self.sink is not None:
                self.sink.reconciled(batch[sent : sent + size])
            sent += size
        del batch[:sent]

    def _group(self, lg: list[LedgerEntry], sg: list[_Rec]) -> int:
        """Pair a key's ledger entries with its statement lines: by serial, then in order. Returns matches."""
        waiting = list(sg)
        pairs: list[tuple[LedgerEntry, _Rec]] = []
        unpaired: list[LedgerEntry] = []
        for e in lg:
            at = next((i for i, s in enumerate(waiting) if e.serial and s[1] == e.serial), None)
            if at is None:
                unpaired.append(e)
            else:
                pairs.append((e, waiting.pop(at)))
        rest: list[LedgerEntry] = []
        for e in unpaired:
            if waiting:
                pairs.append((e, waiting.pop(0)))
            else:
                rest.append(e)
        matched = sum(self._pair(e, s, by_serial=False) for e, s in pairs)
        for s in waiting:
            self._add(self._bank_break(BreakClass.DUPLICATE, s, lg[0], "listed more often than the ledger holds it"))
        self._ledger_rest(rest, [e for e, _ in pairs])
        return matched

    def _ledger_group(self, lg: list[LedgerEntry]) -> None:
        """A key only the ledger holds: the first entry goes on to the serial step, repeats are duplicates."""
        self._ledger_rest(lg, [])

    def _ledger_rest(self, rest: list[LedgerEntry], paired: list[LedgerEntry]) -> None:
        seen = {e.key for e in paired}
        for e in rest:
            if e.key in seen:
                self._add(self._ledger_break(BreakClass.DUPLICATE, e, None, "the ledger holds this voucher twice"))
            else:
                seen.add(e.key)
                self._ledger_leftover(e)

    def _pair(self, e: LedgerEntry, s: _Rec, *, by_serial: bool) -> int:
        """Compare a ledger entry with a statement record (`s` staged by key); 1 if they agree, else a break."""
        diffs: list[str] = []
        found: list[BreakClass] = []
        if e.status != s[3]:
            found.append(BreakClass.STATUS_MISMATCH)
            diffs.append(f"status {e.status.label} ≠ {_STATUS[s[3]].label}")
        if e.amount_fen != s[2]:
            found.append(BreakClass.AMOUNT_MISMATCH)
            diffs.append(f"amount {format_amount_fen(e.amount_fen)} ≠ {format_amount_fen(s[2])}")
        if e.payee_acct_no != s[4]:
            found.append(BreakClass.PAYEE_MISMATCH)
            diffs.append(f"payee account {e.payee_acct_no} ≠ {s[4]}")
        apart = s[5] - e.pay_date.toordinal()
        if apart:
            bank_date = format_date8(date.fromordinal(s[5]))
            diffs.append(f"pay date {format_date8(e.pay_date)} ≠ {bank_date}")
            found.append(BreakClass.CUTOFF_TIMING if abs(apart) <= CUTOFF_WINDOW_DAYS else BreakClass.STATUS_MISMATCH)
        if by_serial:
            self.matched_by_serial += 1
        key = match_key(e.vt_code, e.voucher_no)
        if not found:
            self.batch.append(e)
            if len(self.batch) >= self.limits.batch_entries:
                self._flush()
            if key in self.carried:
                self._clear(key, s)
            return 1
        found.sort(key=_CLASS_ORDER.__getitem__)
        detail = "; ".join(diffs)
        if by_serial:
            detail += f" (matched by serial {e.serial})"
        self._add(self._ledger_break(found[0], e, s, detail))
        if key in self.carried:
            self._clear(key, s)
        return 0

    # --- one-sided --------------------------------------------------------------------------------------------

    def _ledger_leftover(self, e: LedgerEntry) -> None:
        if e.serial:
            self.left_ledger.add(
                (
                    e.serial,
                    e.adm_div_code,
                    e.st_year,
                    e.vt_code,
                    e.voucher_no,
                    e.amount_fen,
                    _CODE[e.status],
                    e.payee_acct_no,
                    e.pay_date.toordinal(),
                )
            )
        else:
            self._ledger_only(e)

    def _statement_leftover(self, s: _Rec) -> None:
        if s[1]:
            self.left_statement.add((s[1], s[0], s[2], s[3], s[4], s[5], s[6], s[7]))
        else:
            self._statement_only(s)

    def _ledger_only(self, e: LedgerEntry) -> None:
        apart = e.pay_date.toordinal() - self.check_day
        if apart and abs(apart) <= CUTOFF_WINDOW_DAYS:
            detail = f"the bank dated it {format_date8(e.pay_date)}: expected on that day's statement"
            self._add(self._ledger_break(BreakClass.CUTOFF_TIMING, e, None, detail))
        else:
            self._add(self._ledger_break(BreakClass.MISSING_AT_BANK, e, None, "on the ledger, not on the statement"))

    def _statement_only(self, s: _Rec) -> None:
        key = s[0]
        if key in self.carried and self._clear(key, s):
            self.carried_in += Totals(1, s[2])
            return
        self._add(self._bank_break(BreakClass.MISSING_IN_LEDGER, s, None, "on the statement, not on the ledger"))

    def _clear(self, key: str, s: _Rec) -> bool:
        """Close a carried timing break of `key` that statement record `s` agrees with; True if one was."""
        waiting = self.carried[key]
        for b in waiting:
            side = b.ledger or b.bank
            assert side is not None
            if (side.amount_fen, _CODE[side.status], side.payee_acct_no) == (s[2], s[3], s[4]):
                waiting.remove(b)
                if not waiting:
                    del self.carried[key]
                self.cleared.append(b)
                return True
        return False

    # --- phase 3: leftovers by serial -------------------------------------------------------------------------

    def merge_leftovers(self) -> None:
        ledger = _groups(self.left_ledger.sorted())
        statement = _groups(self.left_statement.sorted())
        lg = next(ledger, None)
        sg = next(statement, None)
        while lg is not None or sg is not None:
            if sg is None or (lg is not None and lg[0][0] < sg[0][0]):
                assert lg is not None
                for r in lg:
                    self._ledger_only(_entry(r))
                lg = next(ledger, None)
            elif lg is None or sg[0][0] < lg[0][0]:
                self._statement_only(_by_key(sg[0]))
                for r in sg[1:]:
                    self._add(self._bank_break(BreakClass.DUPLICATE, _by_key(r), None, "serial listed twice"))
                sg = next(statement, None)
            else:
                for e, s in zip(lg, sg, strict=False):
                    self.matched += self._pair(_entry(e), _by_key(s), by_serial=True)
                for r in lg[len(sg) :]:
                    self._ledger_only(_entry(r))
                for r in sg[len(lg) :]:
                    self._add(self._bank_break(BreakClass.DUPLICATE, _by_key(r), None, "serial listed twice"))
                lg = next(ledger, None)
                sg = next(statement, None)
        self._flush(all_of_it=True)

    # --- summary ----------------------------------------------------------------------------------------------

    def summary_checks(self, ledger_control: Totals | None) -> None:
        statement = self.statement
        computed = Totals(self.statement_count, self.statement_fen)
        if statement.declared is not None and statement.declared != computed:
            d = statement.declared
            detail = (
                f"statement: declares {d.count} lines, {format_amount_fen(d.amount_fen)}; its details are "
                f"{computed.count} lines, {format_amount_fen(computed.amount_fen)}"
            )
            self._add(self._summary_break("statement", d, computed, detail))
        for finding in statement.findings:
            self._add(self._summary_break(finding.scope, finding.declared, finding.computed, finding.detail))
        streamed = Totals(self.ledger_count, self.ledger_fen)
        if ledger_control is not None and ledger_control != streamed:
            detail = (
                f"ledger: control totals {ledger_control.count} entries, "
                f"{format_amount_fen(ledger_control.amount_fen)}; streamed {streamed.count} entries, "
                f"{format_amount_fen(streamed.amount_fen)}"
            )
            self._add(self._summary_break("ledger", ledger_control, streamed, detail))

    # --- breaks -----------------------------------------------------------------------------------------------

    def _add(self, b: Break) -> None:
        if len(self.breaks) >= self.limits.max_breaks:
            raise TooManyBreaks(f"more than {self.limits.max_breaks} breaks: is the statement for this bank and date?")
        self.breaks.append(b)

    def _ledger_side(self, e: LedgerEntry) -> Side:
        return Side(e.serial, e.amount_fen, e.status, e.payee_acct_no, e.pay_date, str(e.key))

    def _bank_side(self, s: _Rec) -> Side:
        return Side(s[1], s[2], _STATUS[s[3]], s[4], date.fromordinal(s[5]), self.statement.describe(s[6]))

    def _ledger_break(self, cls: BreakClass, e: LedgerEntry, s: _Rec | None, detail: str) -> Break:
        return Break(
            break_class=cls,
            check_date=self.check_date,
            vt_code=e.vt_code,
            voucher_no=e.voucher_no,
            serial=e.serial or (s[1] if s is not None else ""),
            ledger=self._ledger_side(e),
            bank=None if s is None else self._bank_side(s),
            detail=detail,
        )

    def _bank_break(self, cls: BreakClass, s: _Rec, e: LedgerEntry | None, detail: str) -> Break:
        vt_code, _, voucher_no = s[0].partition(KEY_SEPARATOR)
        return Break(
            break_class=cls,
            check_date=self.check_date,
            vt_code=vt_code or s[7],
            voucher_no=voucher_no,
            serial=s[1],
            ledger=None if e is None else self._ledger_side(e),
            bank=self._bank_side(s),
            detail=detail,
        )

    def _summary_break(self, scope: str, declared: Totals, computed: Totals, detail: str) -> Break:
        return Break(
            break_class=BreakClass.SUMMARY_MISMATCH,
            check_date=self.check_date,
            vt_code="",
            voucher_no="",
            serial="",
            ledger=None,
            bank=None,
            detail=detail,
            scope=scope,
            declared=declared,
            computed=computed,
        )


def _groups(records: Iterator[_Rec]) -> Iterator[list[_Rec]]:
    """Consecutive records with the same first element, as lists."""
    group: list[_Rec] = []
    for r in records:
        if group and r[0] != group[0][0]:
            yield group
            group = []
        group.append(r)
    if group:
        yield group


def _entry(r: _Rec) -> LedgerEntry:
    """A ledger leftover (staged by serial) as the entry it was."""
    serial, adm_div_code, st_year, vt_code, voucher_no, amount_fen, status, payee, day = r
    return LedgerEntry(
        adm_div_code, st_year, vt_code, voucher_no, serial, amount_fen, _STATUS[status], payee, date.fromordinal(day)
    )


def _by_key(r: _Rec) -> _Rec:
    """A statement leftover (staged by serial) in the by-key layout."""
    return (r[1], r[0], *r[2:])


class _Feed:
    """A stream read a chunk at a time, with look-ahead: `items[i:]` are the items not yet taken."""

    __slots__ = ("_chunks", "done", "i", "items")

    def __init__(self, chunks: Iterator[list[Any]]) -> None:
        self._chunks = chunks
        self.items: list[Any] = []
        self.i = 0
        self.done = False

    def fill(self, want: int) -> int:
        """Read chunks until `want` items are waiting or the stream ends; the number waiting."""
        while len(self.items) - self.i < want and not self.done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.done = True
            else:
                self.items = self.items[self.i :] + chunk
                self.i = 0
        return len(self.items) - self.i

    def peek(self) -> Any:
        """The next item, or None at the end."""
        return self.items[self.i] if self.fill(1) else None

    def take(self) -> Any:
        """The next item (there must be one)."""
        item = self.items[self.i]
        self.i += 1
        return item


def _first_true(flags: Iterable[bool], default: int) -> int:
    """The index of the first true flag, or `default` (looping in C, stopping at the first)."""
    return next(compress(count(), flags), default)


def _sorted_blocks(sorter: Sorter, chunk: int) -> Iterator[list[_Rec]]:
    """A sorter's output as lists: the external sorter's own stretches, else `chunk` records at a time."""
    if isinstance(sorter, ExternalSorter):
        return sorter.sorted_blocks()
    records = sorter.sorted()
    return iter(lambda: list(islice(records, chunk)), [])


# Fields by position: of a LedgerEntry, and of a staged statement record (_Rec).
_VT_CODE: Final = itemgetter(2)
_VOUCHER_NO: Final = itemgetter(3)
_AMOUNT: Final = itemgetter(5)
_STATE: Final = itemgetter(6)
_PAYEE: Final = itemgetter(7)
_PAY_DATE: Final = itemgetter(8)
_KEY: Final = itemgetter(0)
_S_AMOUNT: Final = itemgetter(2)
_S_CODE: Final = itemgetter(3)
_S_PAYEE: Final = itemgetter(4)
_S_DAY: Final = itemgetter(5)
