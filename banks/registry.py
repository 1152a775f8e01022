"""The explicit registry of bank dialects: a code names a dialect; nothing is registered by import magic.

Dialects written in Python (`banks/<code>.py`) are listed by their module; dialects declared by a file alone
are listed by file name in :data:`DECLARATION_FILES` (package data under `banks/declarations/`) and read with
:func:`banks.declarative.declaration_from_toml` when this module is imported, so a broken declaration file
stops the gateway at start with an error naming the file and the field.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from banks import bocom, ccb, icbc
from banks.declarative import DeclarativeDialect, declaration_from_toml
from banks.dialect import Dialect
from banks.standard import STANDARD_DIALECT

#: The declaration files under `banks/declarations/` that are dialects, each one bank (docs/banks/adding-a-bank.md).
DECLARATION_FILES: Final = ("gxnx.toml",)


def declared_dialect(file_name: str) -> DeclarativeDialect:
    """The dialect of one declaration file shipped under `banks/declarations/`.

    Raises:
        DeclarationError: The file's declaration cannot work; the message names the file and the field.
    """
    text = resources.files("banks").joinpath("declarations").joinpath(file_name).read_text(encoding="utf-8")
    return DeclarativeDialect(declaration_from_toml(text, f"banks/declarations/{file_name}"))


def _by_code(*dialects: Dialect) -> dict[str, Dialect]:
    table: dict[str, Dialect] = {}
    for dialect in dialects:
        if dialect.code in table:
            raise ValueError(f"two dialects are registered as {dialect.code!r}")
        table[dialect.code] = dialect
    return table


#: Every dialect the gateway can speak, by code (the `DIALECT` of `tgw init --bank CODE:DIALECT`).
DIALECTS: dict[str, Dialect] = _by_code(
    STANDARD_DIALECT,
    icbc.DIALECT,
    ccb.DIALECT,
    bocom.DIALECT,
    *(declared_dialect(name) for name in DECLARATION_FILES),
)


class UnknownDialect(KeyError):
    """No dialect is registered under that code."""

    def __str__(self) -> str:
        return f"unknown dialect {self.args[0]!r}; known: {', '.join(sorted(DIALECTS))}"


def get(code: str) -> Dialect:
    """The dialect registered under `code`.

    Raises:
        UnknownDialect: no such dialect.
    """
    try:
        return DIALECTS[code]
    except KeyError:
        raise UnknownDialect(code) from None
