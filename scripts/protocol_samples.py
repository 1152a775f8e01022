"""Prints a complete signed sample of every message type as Markdown, for docs/protocol.md.

The keys are generated afresh each run (throwaway, never stored), so signature values differ between runs;
everything else is deterministic (protocols/samples.py). Usage: `python scripts/protocol_samples.py > out.md`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from banks.standard import STANDARD_DIALECT
from certs.pki import KeyType, create_ca, generate_key, issue_bank_cert, issue_signing_cert
from protocols import samples
from protocols.signature import Signer, Verifier


def main() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    ca_key = generate_key(KeyType.RSA)
    ca = create_ca(ca_key, now)
    gw_key, bank_key = generate_key(KeyType.RSA), generate_key(KeyType.RSA)
    gw = Signer(gw_key, issue_signing_cert(ca, ca_key, gw_key, samples.NODE, now), include_cert=False)
    bank = Signer(bank_key, issue_bank_cert(ca, ca_key, bank_key, samples.BANK, now), include_cert=False)
    verifiers = {"gateway": Verifier(gw_key.public_key()), "bank": Verifier(bank_key.public_key())}
    out = sys.stdout
    for seq, (name, payload, sender) in enumerate(samples.all_payloads(), 1):
        message = samples.message(payload, sender, seq)
        wire = STANDARD_DIALECT.encode(message, gw if sender == "gateway" else bank)
        assert STANDARD_DIALECT.decode(wire, verifiers[sender]).message == message
        out.write(f"#### {name} ({'gateway → bank' if sender == 'gateway' else 'bank → gateway'})\n\n```xml\n")
        out.write(wire.decode("utf-8"))
        out.write("\n```\n\n")


if __name__ == "__main__":
    main()
