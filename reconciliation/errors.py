"""The exceptions of reconciliation: one tree, each error saying where the problem is.

A statement that cannot be read raises :class:`StatementError` naming the source, the line and, for XML, the
element; nothing of it is reconciled (a partial statement would report every missing line as a break). A
ledger port that breaks its contract (entries out of key order) raises :class:`LedgerError`: that is a bug in
the gateway, never a finding about the bank.
"""

from __future__ import annotations


class ReconciliationError(Exception):
    """Base of every error raised by `reconciliation/`."""


class StatementError(ReconciliationError):
    """A statement is malformed, incomplete or inconsistent, and cannot be reconciled.

    Attributes:
        reason: What is wrong, in words.
        source: The file (or "4006 pages", "camt.053") the statement came from.
        line: The line number in that source, when known.
        element: The element path (XML) or field name (text), when known.
    """

    def __init__(self, reason: str, *, source: str = "", line: int | None = None, element: str = "") -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.element = element
        where = source
        if line is not None:
            where = f"{where} line {line}".strip()
        if element:
            where = f"{where} ({element})" if where else element
        super().__init__(f"{where}: {reason}" if where else reason)


class StatementLimitExceeded(StatementError):
    """A statement is larger than a configured cap (bytes, lines, line length, pages)."""


class LedgerError(ReconciliationError):
    """The ledger port broke its contract: entries out of key order, or an entry without a voucher number."""


class TooManyBreaks(ReconciliationError):
    """More breaks than the run's cap: the statement is most likely for another bank or date."""
