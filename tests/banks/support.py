"""Shared by the bank dialect tests, the golden vector generator and the docs generator: samples and keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

from banks import registry
from banks.declarative import DeclarativeDialect
from banks.dialect import Dialect
from protocols import samples
from protocols.messages import Message, Payload, SignOn
from protocols.signature import RSA_SHA256, Signer, Verifier
from tests.vectors.attacks.generate import Keys

VECTORS: Final = Path(__file__).parent.parent / "vectors"

#: Every registered dialect but the standard, whose golden vectors are tests/vectors/standard (test_codec.py).
DECLARED: Final[dict[str, DeclarativeDialect]] = {
    code: d for code, d in registry.DIALECTS.items() if isinstance(d, DeclarativeDialect)
}


def bank_code(dialect: Dialect) -> str:
    """The bank code the samples of a dialect use (`ICBC` for the standard, whose samples are ICBC's)."""
    return "ICBC" if dialect.code == "standard" else dialect.code.upper()


def sample_messages(dialect: Dialect) -> list[tuple[str, Message]]:
    """The samples of protocols.samples that `dialect` carries, addressed between the gateway and its bank."""
    bank = bank_code(dialect)
    out = []
    for seq, (name, payload, sender) in enumerate(samples.all_payloads(), 1):
        if not dialect.supports(type(payload)):
            continue
        message = samples.message(payload, sender, seq)
        out.append((name, readdress(message, bank)))
    return out


def readdress(message: Message, bank: str) -> Message:
    """The same message between the gateway and `bank` instead of ICBC (the MsgId keeps its form)."""
    head = message.head
    src = bank if head.src == samples.BANK else head.src
    des = bank if head.des == samples.BANK else head.des
    msg_id = head.msg_id.replace(samples.BANK[:4], src[:4], 1) if head.src == samples.BANK else head.msg_id
    body: Payload = message.body
    if isinstance(body, SignOn):
        body = dataclasses.replace(body, bank_code=bank)
    return Message(dataclasses.replace(head, src=src, des=des, msg_id=msg_id, msg_ref=msg_id), body)


def keys_for(dialect: Dialect, by_kind: dict[str, Keys]) -> Keys:
    """Keys of a type the dialect's signature scheme accepts (RSA where it may, else ECDSA P-256)."""
    return by_kind["rsa"] if RSA_SHA256 in dialect.signature_methods else by_kind["ec"]


def signer_verifier(keys: Keys) -> tuple[Signer, Verifier]:
    return Signer(keys.key, keys.cert), Verifier(keys.cert)
