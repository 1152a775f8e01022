"""Statement readers: the 4006 document, text files of a declared layout, and ISO 20022 camt.053.

Every reader returns a :class:`~reconciliation.readers.base.StatementStream`: read once, line by line, in flat
memory, with caps (:class:`~reconciliation.readers.base.StatementLimits`) and errors that name the source, the
line and the element (:class:`~reconciliation.errors.StatementError`).
"""

from reconciliation.readers.base import DEFAULT_LIMITS, StatementLimits, StatementStream, SummaryFinding
from reconciliation.readers.camt053 import read_camt053
from reconciliation.readers.standard import from_messages, read_4006
from reconciliation.readers.text import read_text

__all__ = [
    "DEFAULT_LIMITS",
    "StatementLimits",
    "StatementStream",
    "SummaryFinding",
    "from_messages",
    "read_4006",
    "read_camt053",
    "read_text",
]
