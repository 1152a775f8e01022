"""The explicit registry of bank dialects: a code names a dialect; nothing is registered by import magic."""

from __future__ import annotations

from banks.dialect import Dialect
from banks.standard import STANDARD_DIALECT

#: Every dialect the gateway can speak, by code (the `DIALECT` of `tgw init --bank CODE:DIALECT`).
DIALECTS: dict[str, Dialect] = {
    STANDARD_DIALECT.code: STANDARD_DIALECT,
}


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
