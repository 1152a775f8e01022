"""Rewrites the golden vectors of the bank dialects (`python -m tests.banks.regenerate`).

Each file under `tests/vectors/<code>/` is the UNSIGNED document of one sample message in that dialect, exactly
as `encode` signs it (no key is committed; signing and verifying are checked separately by the conformance
suite). Run it only for an intended change; the golden tests exist to notice every other change.
"""

from __future__ import annotations

from tests.banks.support import DECLARED, VECTORS, sample_messages


def main() -> None:
    for code, dialect in DECLARED.items():
        out = VECTORS / code
        out.mkdir(exist_ok=True)
        for old in out.glob("*.xml"):
            old.unlink()
        for name, message in sample_messages(dialect):
            (out / f"{name}.xml").write_bytes(dialect.encode_unsigned(message))
        print(f"wrote {out}/ ({len(list(out.glob('*.xml')))} files)")


if __name__ == "__main__":
    main()
