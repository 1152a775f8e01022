"""The ledger port: what reconciliation needs from the gateway, as three small protocols, and in-memory versions.

`reconciliation/` never imports the gateway (docs/architecture.md); the gateway implements these on its store:

* :class:`LedgerPort`: the ledger's entries for a bank and check date, **in key order**, as plain
  :class:`~reconciliation.model.LedgerEntry` records, and optionally control totals computed independently
  (a SQL aggregate), which the matcher checks against what was streamed.
* :class:`ScratchArea`: where a large statement is staged. It hands out :class:`Sorter` objects; the
  matcher stages the statement in one, sorted by key, and the lines it cannot match by key in two more, sorted
  by bank serial. :class:`TempFileScratch` is the implementation (temporary files, memory stays flat); the
  gateway only chooses its directory.
* :class:`ResultSink`: where results go. Matched entries arrive in batches while the run proceeds (the
  gateway marks those vouchers `RECONCILED`), and the run result once at the end (the gateway stores the run
  and its breaks, and sends the 2507).

**Key order** is the order of :func:`~reconciliation.model.match_key`: by `VtCode`, then `VoucherNo`, both
compared by code point, all entries of one key next to each other. In SQL that is
``ORDER BY vt_code COLLATE "C", voucher_no COLLATE "C"`` on PostgreSQL and plain ``ORDER BY vt_code,
voucher_no`` on SQLite (BINARY collation). A locale collation would order differently; the matcher checks the
order as it reads and raises :class:`~reconciliation.errors.LedgerError` rather than report false breaks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from types import TracebackType
from typing import Protocol

from reconciliation.extsort import ExternalSorter, Record
from reconciliation.model import LedgerEntry, RunResult, Totals, match_key


class LedgerPort(Protocol):
    """The gateway's ledger, read-only, as reconciliation sees it."""

    def entries(self, bank: str, check_date: date) -> Iterable[LedgerEntry]:
        """The entries of `bank` booked on the gateway's `check_date`, in key order (module docstring).

        Which entries are the ledger of a date is the gateway's definition (docs/reconciliation.md, "The
        ledger of a check date"): every payment whose result (paid or failed) and every return the gateway
        recorded on that work date, each with the pay date the bank gave on its receipt or notice.
        """
        ...

    def control_totals(self, bank: str, check_date: date) -> Totals | None:
        """Count and signed sum of the same entries computed independently, or None when not available."""
        ...


class Sorter(Protocol):
    """A stable sort of plain tuples by their first element, used once (see :mod:`reconciliation.extsort`)."""

    def add(self, record: Record) -> None:
        """Add one record."""
        ...

    def extend(self, records: Iterable[Record]) -> None:
        """Add many records."""
        ...

    def sorted(self) -> Iterator[Record]:
        """Every record, in stable key order; callable once, after the last :meth:`add`."""
        ...

    def close(self) -> None:
        """Release whatever the sort holds (files, memory)."""
        ...

    def __enter__(self) -> Sorter: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ScratchArea(Protocol):
    """Where a statement too large for memory is staged."""

    def sorter(self) -> Sorter:
        """A new, empty sorter."""
        ...


class ResultSink(Protocol):
    """Where a run's results go."""

    def reconciled(self, entries: Sequence[LedgerEntry]) -> None:
        """A batch of ledger entries that matched the statement in every compared field."""
        ...

    def finish(self, result: RunResult) -> None:
        """The run's result, once, after every batch."""
        ...


class TempFileScratch:
    """A scratch area of temporary files (unlinked at creation, so nothing is left behind).

    Args:
        directory: Where the files go (None: the system's temporary directory).
        run_records: Records held in memory per sorted run (about 400 bytes each). Small runs sort and
            serialize inside the processor's cache; 16 Ki measured fastest for a million lines.
        fan_in: Runs merged at once (so at most this many files open per level of the merge).
    """

    def __init__(self, directory: str | None = None, *, run_records: int = 16_384, fan_in: int = 64) -> None:
        self._directory = directory
        self._run_records = run_records
        self._fan_in = fan_in

    def sorter(self) -> ExternalSorter:
        """A new external sorter in this area."""
        return ExternalSorter(directory=self._directory, run_records=self._run_records, fan_in=self._fan_in)


class InMemoryLedger:
    """A ledger held in a dict, for tests, the simulators and the benchmark's small sizes.

    Entries may be added in any order; :meth:`entries` yields them in key order.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, date], list[LedgerEntry]] = {}
        self._control: dict[tuple[str, date], Totals] = {}

    def add(self, bank: str, check_date: date, entries: Iterable[LedgerEntry]) -> None:
        """Book `entries` for `bank` on `check_date`."""
        self._entries.setdefault((bank, check_date), []).extend(entries)

    def set_control_totals(self, bank: str, check_date: date, totals: Totals) -> None:
        """Declare control totals that differ from the entries (to test the ledger summary check)."""
        self._control[(bank, check_date)] = totals

    def entries(self, bank: str, check_date: date) -> list[LedgerEntry]:
        """The entries in key order (stable for equal keys)."""
        return sorted(self._entries.get((bank, check_date), []), key=lambda e: match_key(e.vt_code, e.voucher_no))

    def control_totals(self, bank: str, check_date: date) -> Totals | None:
        """The declared control totals, else the count and sum of the entries."""
        given = self._control.get((bank, check_date))
        if given is not None:
            return given
        entries = self._entries.get((bank, check_date), [])
        return Totals(len(entries), sum(e.amount_fen for e in entries))


class InMemorySink:
    """A result sink that keeps everything, for tests.

    Attributes:
        reconciled_entries: Every matched entry, in the order received.
        batches: How many batches arrived.
        results: Every result received (one per run).
    """

    def __init__(self) -> None:
        self.reconciled_entries: list[LedgerEntry] = []
        self.batches = 0
        self.results: list[RunResult] = []

    def reconciled(self, entries: Sequence[LedgerEntry]) -> None:
        """Keep a batch of matched entries."""
        self.reconciled_entries.extend(entries)
        self.batches += 1

    def finish(self, result: RunResult) -> None:
        """Keep the result."""
        self.results.append(result)
