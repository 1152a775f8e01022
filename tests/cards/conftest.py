"""Fixtures of the card tests: the card cycle driven through the store, the way the hub and the API drive it.

`cards` wraps a migrated database (SQLite and PostgreSQL, from the store's `db_engine`) with the steps of the
cycle: a bank's 7101 goes through the payment service's `handle_request` (idempotency by MsgId, the archive, the
hook into the card service) exactly as the hub hands it over; the review and the repayment call the card
service; the bank's receipt goes through `handle_request` again. Messages are encoded unsigned with the standard
codec (the hub verifies signatures before any of this; the end-to-end test covers them), and the archive
reader decodes them back the same way.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
from sqlalchemy import Engine, delete, select
from twisted.internet.task import Clock

from banks.dialect import Inbound
from banks.standard import STANDARD_DIALECT, body_digest
from certs.pki import KeyType, load_certificate, load_private_key
from certs.store import PkiDirectory
from gateway import config as configuration
from gateway.cards import service
from gateway.cards.service import Ref, RepayResult, RepaySettings
from gateway.config import Config, PaymentSettings
from gateway.dbthread import InlineDatabase, in_transaction
from gateway.hub import Hub
from gateway.payments import service as payments
from gateway.store import repo
from gateway.store.tables import ALL_TABLES, card_spending, vouchers
from protocols import codec
from protocols.messages import (
    CardSpending,
    Head,
    Message,
    Payload,
    QuotaLine,
    QuotaNotice,
    Receipt,
    ReceiptDetail,
    Reply,
    SpendRecord,
    StatusReply,
    Voucher,
    VoucherKey,
)
from protocols.signature import Signer
from protocols.xmlsafe import parse_document

T = TypeVar("T")

NODE: Final = "450100000000"
ADM: Final = "450100"
#: 10:30 China Standard Time on the work date.
NOW: Final = datetime(2026, 11, 23, 2, 30)
TODAY: Final = date(2026, 11, 23)
BANKS: Final = {"ICBC": "中国工商银行", "CCB": "中国建设银行"}
HEALTH: Final = "102003"  # 南宁市卫生健康委员会
EDUCATION: Final = "101001"  # 南宁市教育局
AGENCY_NAMES: Final = {HEALTH: "南宁市卫生健康委员会", EDUCATION: "南宁市教育局"}


def card_number(n: int) -> str:
    """A 19-digit official card number of the test BIN."""
    return f"628288{n:013d}"


def zero_balance(agency: str, bank: str) -> str:
    return f"{'21' if bank == 'ICBC' else '45'}0{agency}00000001"


def read_archived(bank: str, raw: bytes) -> Message:
    """The archive reader of these tests: the standard codec, unsigned."""
    return codec.from_tree(parse_document(raw))


@dataclass
class Cards:
    """The card cycle on one database (see the module docstring)."""

    engine: Engine
    now: datetime = NOW
    today: date = TODAY
    max_details: int = 50
    reader: Callable[[str, bytes], Message] = read_archived
    #: bank code → its signer: messages from that bank are signed as on the wire (for a hub's archive reader)
    signers: dict[str, Signer] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _spend_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def tx(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in one transaction, as the store thread does."""
        return in_transaction(self.engine, lambda conn: fn(conn, *args, **kwargs))

    # --- messages from a bank ---------------------------------------------------------------------------------

    def msg_id(self, bank: str) -> str:
        return f"{bank}{self.today:%Y%m%d}{next(self._ids):08d}"

    def inbound(self, bank: str, payload: Payload, msg_id: str | None = None, msg_ref: str | None = None) -> Inbound:
        msg_id = msg_id or self.msg_id(bank)
        head = Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_ref or msg_id,
            src=bank,
            des=NODE,
            work_date=self.today,
            send_time=datetime.combine(self.today, time(10, 30)),
        )
        message = Message(head, payload)
        signer = self.signers.get(bank)
        raw = codec.encode(message) if signer is None else STANDARD_DIALECT.encode(message, signer)
        return Inbound(message, raw, body_digest(parse_document(raw)))

    def send(self, bank: str, payload: Payload, msg_id: str | None = None) -> payments.Outcome:
        """A bank's request through the payment service, as the hub hands it over."""
        item = self.inbound(bank, payload, msg_id)
        return self.tx(payments.handle_request, bank, "conn-1", item, self.now)

    def spend(
        self,
        bank: str = "ICBC",
        *,
        agency: str = HEALTH,
        card: int = 1,
        amount_fen: int = 86_000,
        limit_date: date | None = None,
        spend_id: str | None = None,
        holder: str = "李明",
    ) -> SpendRecord:
        """One spending record (a fresh SpendId unless given)."""
        txn_date = self.today - timedelta(days=3)
        return SpendRecord(
            spend_id=spend_id or f"{bank}{txn_date:%Y%m%d}{next(self._spend_seq):06d}",
            card_no=card_number(card),
            card_holder=holder,
            agency_code=agency,
            txn_date=txn_date,
            txn_time=time(14, 5, 33),
            merchant_name="南宁某某酒店",
            amt_fen=amount_fen,
            auth_code="A10332",
            limit_date=limit_date or txn_date + timedelta(days=30),
        )

    def push(self, bank: str, records: Sequence[SpendRecord], msg_id: str | None = None) -> payments.Outcome:
        """A 7101 from `bank`."""
        return self.send(bank, CardSpending(records=tuple(records)), msg_id)

    # --- the finance side -----------------------------------------------------------------------------------

    def grant(self, agency: str, quota_fen: int, bank: str = "ICBC", voucher_no: str | None = None) -> None:
        """A 5106 for `agency` at `bank`, through the payment service (quota granted, notice queued)."""
        notice = QuotaNotice(
            adm_div_code=ADM,
            st_year=self.today.year,
            vt_code="5106",
            vou_date=self.today,
            voucher_no=voucher_no or f"5106{next(self._ids):012d}",
            lines=(
                QuotaLine(
                    id="1",
                    agency_code=agency,
                    agency_name=AGENCY_NAMES.get(agency, f"机构{agency}"),
                    pay_acct_no=zero_balance(agency, bank),
                    fund_type_code="1",
                    exp_func_code="2100201",
                    quota_amt_fen=quota_fen,
                ),
            ),
        )
        self.tx(payments.submit_quota_notice, bank, notice, "test", self.now, NODE)

    def approve(self, agency: str, refs: Sequence[Ref | SpendRecord], bank: str = "ICBC") -> list[Ref]:
        return self.tx(service.approve, agency, self.refs(refs, bank), "api:test", self.now, self.today, ADM)

    def reject(self, agency: str, refs: Sequence[Ref | SpendRecord], reason: str, bank: str = "ICBC") -> list[Ref]:
        return self.tx(service.reject, agency, self.refs(refs, bank), reason, "api:test", self.now)

    @staticmethod
    def refs(items: Sequence[Ref | SpendRecord], bank: str = "ICBC") -> list[Ref]:
        return [i if isinstance(i, Ref) else Ref(bank, i.spend_id) for i in items]

    def repay(self, *, agency: str | None = None, bank: str | None = None) -> RepayResult:
        settings = RepaySettings(node=NODE, adm_div_code=ADM, banks=BANKS, max_details=self.max_details)
        return self.tx(service.repay, settings, self.reader, "api:test", self.now, self.today, agency=agency, bank=bank)

    # --- the bank's answers -----------------------------------------------------------------------------------

    def dispatch(self, bank: str = "ICBC") -> list[str]:
        """What the dispatcher does: claim the bank's queued messages and record them as sent; their MsgIds."""
        items = self.tx(payments.claim_outbox, bank, self.now, 1000, "test-node", False)
        self.tx(payments.mark_sent, bank, {i.id: b"<sent/>" for i in items}, self.now, PaymentSettings())
        return [i.msg_id for i in items]

    def nak(self, bank: str, msg_id: str, result: int, add_word: str) -> payments.Outcome:
        """The bank refuses one of our messages with its 9120."""
        item = self.inbound(bank, Reply(ori_msg_no="8202", result=result, add_word=add_word), msg_ref=msg_id)
        return self.tx(payments.handle_bank_reply, bank, "conn-1", item, self.now)

    def voucher(self, key: VoucherKey | str) -> Voucher:
        key = VoucherKey.parse(key) if isinstance(key, str) else key
        record = self.tx(repo.get_voucher_by_key, key)
        assert record is not None, key
        return record.voucher()

    def receipt(
        self,
        key: VoucherKey | str,
        failed: dict[str, str] | None = None,
        *,
        serial: str | None = None,
        refuse: str | None = None,
        with_details: bool = True,
    ) -> Receipt:
        """The bank's receipt for a repayment voucher: `failed` detail Id → reason; `refuse` fails it whole."""
        v = self.voucher(key)
        failed = dict(failed or {})
        if refuse is not None:
            failed = dict.fromkeys((d.id for d in v.details), refuse)
        paid_fen = sum(d.pay_amt_fen for d in v.details if d.id not in failed)
        return Receipt(
            adm_div_code=v.adm_div_code,
            st_year=v.st_year,
            vt_code=v.vt_code,
            voucher_no=v.voucher_no,
            pay_amt_fen=v.pay_amt_fen,
            x_pay_date=self.today,
            x_agent_business_no=serial or f"SER{v.voucher_no}",
            x_pay_amt_fen=paid_fen,
            x_payee_acct_no=v.payee_acct_no,
            x_payee_acct_name=v.payee_acct_name,
            x_result="S" if paid_fen else "F",
            x_add_word=None if not failed else ("部分成功" if paid_fen else refuse or next(iter(failed.values()))),
            details=tuple(
                ReceiptDetail(id=d.id, x_result="F" if d.id in failed else "S", x_add_word=failed.get(d.id))
                for d in v.details
            )
            if with_details
            else (),
        )

    def status(self, key: VoucherKey | str, x_status: int, paid_fen: int | None = None) -> StatusReply:
        v = self.voucher(key)
        return StatusReply(
            adm_div_code=v.adm_div_code,
            st_year=v.st_year,
            vt_code=v.vt_code,
            voucher_no=v.voucher_no,
            x_status=x_status,
            x_pay_date=self.today if x_status in (2, 3) else None,
            x_agent_business_no=f"SER{v.voucher_no}" if x_status in (2, 3) else None,
            x_pay_amt_fen=paid_fen if x_status == 2 else (0 if x_status == 3 else None),
            x_add_word="卡片已冻结" if x_status == 3 else None,
        )

    # --- looking ----------------------------------------------------------------------------------------------

    def record(self, ref: Ref | SpendRecord, bank: str = "ICBC") -> dict[str, Any]:
        ref = ref if isinstance(ref, Ref) else Ref(bank, ref.spend_id)
        row = self.tx(
            lambda conn: (
                conn.execute(
                    select(card_spending).where(
                        card_spending.c.bank_code == ref.bank, card_spending.c.spend_id == ref.spend_id
                    )
                )
                .mappings()
                .first()
            )
        )
        assert row is not None, ref
        return dict(row)

    def records(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.tx(
                lambda conn: conn.execute(select(card_spending).order_by(card_spending.c.id)).mappings().all()
            )
        ]

    def used_fen(self, agency: str, year: int | None = None) -> int:
        quota = self.tx(repo.get_quota, ADM, year or self.today.year, agency)
        return 0 if quota is None else quota.used_fen

    def voucher_state(self, key: VoucherKey | str) -> str:
        key = VoucherKey.parse(key) if isinstance(key, str) else key
        return str(
            self.tx(
                lambda conn: conn.execute(
                    select(vouchers.c.state).where(
                        vouchers.c.voucher_no == key.voucher_no, vouchers.c.vt_code == key.vt_code
                    )
                ).scalar_one()
            )
        )

    def later(self, **delta: float) -> Cards:
        """The same store, later (a fake clock)."""
        return replace(self, now=self.now + timedelta(**delta), today=self.today + timedelta(**delta))


def wipe(engine: Engine) -> None:
    """Empty every table (for Hypothesis examples sharing one database)."""
    with engine.begin() as conn:
        for table in reversed(ALL_TABLES):
            conn.execute(delete(table))


@pytest.fixture
def cards(db_engine: Engine) -> Cards:
    return Cards(db_engine)


# --- a hub on the test database (for the API) --------------------------------------------------------------------

TOKEN: Final = "cards-test-token-0123456789"


@pytest.fixture(scope="session")
def pki_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI made once per session (ECDSA, fast): CA, gateway certificates, ICBC and CCB."""
    directory = tmp_path_factory.mktemp("cards-pki") / "pki"
    PkiDirectory(directory).init(NODE, list(BANKS), KeyType.EC, datetime(2026, 11, 1, tzinfo=UTC))
    return directory


@pytest.fixture
def instance(pki_template: Path, tmp_path: Path, db_url: str) -> Config:
    """An instance as `tgw init` makes it, on the test database, with bank names as a real instance has them."""
    directory = tmp_path / "instance"
    shutil.copytree(pki_template, directory / "pki")
    text = configuration.render(
        node=NODE, banks=[(c, "standard") for c in BANKS], bank_port=0, web_port=0, database=db_url, api_token=TOKEN
    )
    for code, name in BANKS.items():
        text = text.replace(f"[banks.{code}]\n", f'[banks.{code}]\nname = "{name}"\n')
    (directory / "gateway.toml").write_text(text, encoding="utf-8")
    return configuration.load(directory / "gateway.toml")


@pytest.fixture
def hub(instance: Config, db_engine: Engine) -> Hub:
    """The gateway's hub on the test database (synchronous store), its clock at :data:`NOW`."""
    clock = Clock()
    clock.advance(NOW.replace(tzinfo=UTC).timestamp())
    return Hub(instance, InlineDatabase(db_engine), clock, node_id="test-node")


@pytest.fixture
def signed(db_engine: Engine, instance: Config) -> Cards:
    """The cycle with the banks' messages signed by their own keys, as the hub's archive reader verifies them."""
    pki = instance.directory / "pki" / "banks"
    signers = {
        code: Signer(load_private_key(pki / code / "key.pem"), load_certificate(pki / code / "cert.pem"))
        for code in BANKS
    }
    return Cards(db_engine, signers=signers)
