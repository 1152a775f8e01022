"""Declarations of text statement files: the former home of :mod:`banks.statement_format`, kept as a re-export.

The declarations moved to `banks/` so that a bank dialect, which lives below `reconciliation/` and may not
import from it, can declare its statement file (docs/reconciliation.md). Importing them from here keeps
working; new code imports :mod:`banks.statement_format`.
"""

from __future__ import annotations

from banks.statement_format import (
    DATE_FORMATS,
    ENCODINGS,
    FIELDS,
    REQUIRED_FIELDS,
    STANDARD_STATUS_CODES,
    STANDARD_TEXT,
    AmountUnit,
    FileFormat,
    FileFormatError,
    SummaryLine,
    SummaryPlace,
)

__all__ = [
    "DATE_FORMATS",
    "ENCODINGS",
    "FIELDS",
    "REQUIRED_FIELDS",
    "STANDARD_STATUS_CODES",
    "STANDARD_TEXT",
    "AmountUnit",
    "FileFormat",
    "FileFormatError",
    "SummaryLine",
    "SummaryPlace",
]
