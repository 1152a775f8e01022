"""Fixtures of the gateway unit tests: an instance on disk, a hub on a fake clock and a synchronous store, and a
bank's side of the conversation (signing what a bank sends, reading what the gateway writes).

The development PKI (ECDSA P-256, the fast key type) is created once per session and copied into each test's
directory; `gateway.toml` is written with :func:`gateway.config.render` and read back with
:func:`gateway.config.load`, so every test runs on a configuration exactly as `tgw init` makes it. Banks ICBC
and CCB are configured; ABC holds a certificate from the same CA but is not configured (an unknown peer).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from OpenSSL import crypto
from sqlalchemy import Engine, select
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from banks.dialect import Inbound
from banks.standard import STANDARD_DIALECT
from certs.pki import KeyType, load_certificate, load_private_key
from certs.store import PkiDirectory
from gateway import config as configuration
from gateway.config import Config
from gateway.dbthread import InlineDatabase
from gateway.hub import Hub
from gateway.session import BankSession
from gateway.store import repo
from gateway.store.db import transaction
from gateway.store.tables import ALL_TABLES, vouchers
from protocols import jsonform
from protocols.framing import STANDARD, FrameDecoder, encode_frame
from protocols.messages import Head, Message, Payload, SignOn, VoucherKey
from protocols.signature import Signer, Verifier

NODE: Final = "450100000000"
CONFIGURED: Final = ("ICBC", "CCB")
STRANGER: Final = "ABC"  # a certificate from the bank CA, but no configured bank
TOKEN: Final = "test-token-0123456789"
#: The tests' "now": 10:30 China Standard Time on the samples' work date (protocols.samples.WORK_DATE).
NOW: Final = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
NOW_NAIVE: Final = NOW.replace(tzinfo=None)
WORK_DATE: Final = date(2026, 11, 23)


@pytest.fixture(scope="session")
def pki_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI made once per session: CA, gateway certificates, ICBC, CCB and ABC."""
    directory = tmp_path_factory.mktemp("pki-template") / "pki"
    PkiDirectory(directory).init(NODE, [*CONFIGURED, STRANGER], KeyType.EC, NOW)
    return directory


def write_instance(directory: Path, pki_template: Path, extra: str = "") -> Path:
    """An instance directory as `tgw init` makes it (banks ICBC and CCB); `extra` is appended to gateway.toml."""
    shutil.copytree(pki_template, directory / "pki")
    text = configuration.render(
        node=NODE,
        banks=[(code, "standard") for code in CONFIGURED],
        bank_port=0,
        web_port=0,
        database="sqlite:///gateway.db",
        api_token=TOKEN,
    )
    path = directory / "gateway.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@pytest.fixture
def config(pki_template: Path, tmp_path: Path) -> Config:
    """The test instance's configuration, read back from disk."""
    return configuration.load(write_instance(tmp_path / "instance", pki_template))


@pytest.fixture
def clock() -> Clock:
    """A fake clock standing at :data:`NOW`."""
    c = Clock()
    c.advance(NOW.timestamp())
    return c


def make_hub(config: Config, engine: Engine, clock: Clock, **session_limits: Any) -> Hub:
    """A hub on `engine` through the synchronous store, with some session limits changed."""
    if session_limits:
        config = replace(config, session=replace(config.session, **session_limits))
    return Hub(config, InlineDatabase(engine), clock, node_id="test-node")


@pytest.fixture
def hub(config: Config, db_engine: Engine, clock: Clock) -> Hub:
    """The gateway's hub on the test database, driven by the fake clock."""
    return make_hub(config, db_engine, clock)


# --- the bank's side ---------------------------------------------------------------------------------------------


def pki_path(config: Config) -> Path:
    return config.directory / "pki"


def peer_certificate(config: Config, code: str) -> crypto.X509:
    """A bank's client certificate as pyOpenSSL returns it from `getPeerCertificate()`."""
    return crypto.X509.from_cryptography(load_certificate(pki_path(config) / "banks" / code / "cert.pem"))


@dataclass
class Bank:
    """One bank's side: signs what it sends with its own key, verifies what the gateway sends with the pinned
    gateway signing certificate."""

    code: str
    signer: Signer
    verifier: Verifier  # the bank's certificate: how the gateway verifies this bank
    gateway: Verifier  # the gateway's signing certificate
    seq: int = 0

    def next_msg_id(self) -> str:
        self.seq += 1
        return f"{self.code}20261123{self.seq:08d}"

    def document(
        self,
        payload: Payload,
        *,
        msg_id: str | None = None,
        msg_ref: str | None = None,
        src: str | None = None,
        des: str = NODE,
    ) -> bytes:
        """A signed frame body of `payload` from this bank."""
        msg_id = msg_id or self.next_msg_id()
        head = Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_id if msg_ref is None else msg_ref,
            src=self.code if src is None else src,
            des=des,
            work_date=WORK_DATE,
            send_time=datetime(2026, 11, 23, 10, 30, 1),
        )
        return STANDARD_DIALECT.encode(Message(head, payload), self.signer)

    def frame(self, payload: Payload, **kwargs: Any) -> bytes:
        """The same as one framed message on the wire."""
        return encode_frame(STANDARD, self.document(payload, **kwargs))

    def inbound(self, payload: Payload, **kwargs: Any) -> Inbound:
        """The verified inbound message the gateway's dialect makes of `payload` (for the service tests)."""
        return STANDARD_DIALECT.decode(self.document(payload, **kwargs), self.verifier)

    def read(self, data: bytes) -> list[Message]:
        """Every message in `data` (a stream of frames the gateway wrote), verified with the gateway's key."""
        bodies = FrameDecoder(STANDARD).feed(data)
        return [STANDARD_DIALECT.decode(body, self.gateway).message for body in bodies]


def make_bank(config: Config, code: str) -> Bank:
    directory = pki_path(config) / "banks" / code
    cert = load_certificate(directory / "cert.pem")
    return Bank(
        code=code,
        signer=Signer(load_private_key(directory / "key.pem"), cert),  # type: ignore[arg-type]
        verifier=Verifier(cert),
        gateway=Verifier(load_certificate(config.signing_cert)),
    )


@pytest.fixture
def icbc(config: Config) -> Bank:
    return make_bank(config, "ICBC")


@pytest.fixture
def ccb(config: Config) -> Bank:
    return make_bank(config, "CCB")


def quick_inbound(message: Message, raw: bytes | None = None) -> Inbound:
    """An Inbound built without signing (for the property tests): the digest covers the payload's JSON form."""
    canonical = json.dumps(jsonform.to_json(message.body), sort_keys=True, ensure_ascii=False).encode()
    return Inbound(message=message, raw=raw or canonical, content_digest=hashlib.sha256(canonical).hexdigest())


# --- a session over a fake TLS transport -------------------------------------------------------------------------


class FakeTlsTransport(StringTransport):
    """A StringTransport that presents a verified peer certificate and records an abort apart from a close."""

    def __init__(self, peer: crypto.X509 | None) -> None:
        super().__init__()
        self.peer = peer
        self.aborted = False

    def getPeerCertificate(self) -> crypto.X509 | None:
        return self.peer

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


@dataclass
class Link:
    """A session, its transport and the bank at the other end."""

    session: BankSession
    transport: FakeTlsTransport
    bank: Bank
    backlog: list[Message] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        self.session.dataReceived(data)

    def received(self) -> list[Message]:
        """The messages the gateway wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        messages = self.backlog + self.bank.read(data)
        self.backlog = []
        return messages

    def sign_on(self) -> Message:
        """Sign on and return the gateway's 9007 (what the gateway sent after it stays for :meth:`received`)."""
        self.send(self.bank.frame(SignOn(bank_code=self.bank.code, last_work_date=date(2026, 11, 20))))
        reply, *self.backlog = self.received()
        assert reply.head.msg_no == "9007", reply
        return reply


def connect(hub: Hub, clock: Clock, bank: Bank, peer: crypto.X509 | None) -> Link:
    """A session of `hub` whose TLS handshake has completed with `peer` as the client certificate."""
    session = BankSession(hub, clock)
    transport = FakeTlsTransport(peer)
    session.makeConnection(transport)
    session.handshakeCompleted()
    return Link(session, transport, bank)


@pytest.fixture
def link(hub: Hub, clock: Clock, config: Config, icbc: Bank) -> Iterator[Link]:
    """An ICBC session, handshake done, not signed on."""
    connection = connect(hub, clock, icbc, peer_certificate(config, "ICBC"))
    yield connection


# --- store helpers -----------------------------------------------------------------------------------------------


def emptied(engine: Engine) -> Engine:
    """`engine`'s tables emptied by DELETE, children first (the order of ALL_TABLES reversed).

    The gateway unit modules override the store plugin's `pg_db_engine` with this (module-level fixtures, so
    that no other test is affected): the plugin's `TRUNCATE … RESTART IDENTITY CASCADE` of every table costs
    0.2–0.5 s per test on PostgreSQL, which would be most of these tests' run time, while deleting the few rows
    a unit test writes takes milliseconds. Identities are not restarted; no test here depends on an id value.
    """
    with transaction(engine) as conn:
        for table in reversed(ALL_TABLES):
            conn.execute(table.delete())
    return engine


def voucher_state(engine: Engine, key: VoucherKey) -> str:
    with transaction(engine, read_only=True) as conn:
        record = repo.get_voucher_by_key(conn, key)
    assert record is not None, key
    return record.state


def all_chains_verify(engine: Engine) -> bool:
    """Whether the history chain of every voucher in the store proves itself."""
    with transaction(engine, read_only=True) as conn:
        ids = list(conn.execute(select(vouchers.c.id)).scalars())
        return all(repo.verify_chain(conn, voucher_id) for voucher_id in ids)


def later(seconds: float) -> datetime:
    """:data:`NOW_NAIVE` plus `seconds`."""
    return NOW_NAIVE + timedelta(seconds=seconds)
