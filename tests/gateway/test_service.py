"""The payment service, step by step, on SQLite and PostgreSQL: every function called directly in a transaction.

The bank's messages are real: signed by the bank's key with the standard dialect and verified back into
:class:`~banks.dialect.Inbound` objects, exactly what the hub hands the service. After each flow the history
chain of every voucher must prove itself (`gateway.store.repo.verify_chain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from banks.dialect import Inbound
from gateway.config import PaymentSettings
from gateway.payments import service
from gateway.payments.machine import TRANSITIONS, Event, State
from gateway.store import repo
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import ALL_TABLES, archive, inbound, outbox, voucher_history, vouchers
from protocols import samples
from protocols.errors import ValidationError
from protocols.messages import (
    Head,
    Message,
    Payload,
    Receipt,
    Reply,
    ReturnNotice,
    StatusReply,
    Voucher,
    VoucherDetail,
)
from tests.gateway.conftest import (
    NODE,
    NOW_NAIVE,
    WORK_DATE,
    Bank,
    all_chains_verify,
    emptied,
    make_bank,
    quick_inbound,
)


@pytest.fixture
def pg_db_engine(pg_engine: Engine) -> Engine:
    """The session's PostgreSQL database, emptied quickly for this module (see tests.gateway.conftest.emptied)."""
    return emptied(pg_engine)


T = TypeVar("T")
T0 = NOW_NAIVE
SETTINGS = PaymentSettings()
AGENCY = ("450100", 2026, "102003")  # the agency of protocols.samples.authorized_voucher
QUOTA_FEN = 50_000_000  # what protocols.samples.quota_notice grants that agency


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def direct(n: int = 123, amount_fen: int = 12_500_000) -> Voucher:
    """A 5201 with its own number and amount."""
    return samples.direct_voucher(f"5201450100{n:06d}", (amount_fen,))


def authorized(n: int = 45, amount_fen: int = 3_860_050) -> Voucher:
    """An 8202 of agency 102003 with its own number and amount."""
    v = samples.authorized_voucher()
    return dataclasses.replace(
        v,
        voucher_no=f"8202450100{n:06d}",
        pay_amt_fen=amount_fen,
        details=(VoucherDetail(id="1", pay_amt_fen=amount_fen, exp_func_code=v.exp_func_code),),
    )


def receipt_for(v: Voucher, result: str = "S", serial: str | None = None, pay_amt_fen: int | None = None) -> Receipt:
    """The bank's receipt for `v`: paid in full (S) or refused (F)."""
    return Receipt(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code=v.vt_code,
        voucher_no=v.voucher_no,
        pay_amt_fen=v.pay_amt_fen if pay_amt_fen is None else pay_amt_fen,
        x_pay_date=WORK_DATE,
        x_agent_business_no=serial or f"ICBC{v.voucher_no}",
        x_pay_amt_fen=(v.pay_amt_fen if pay_amt_fen is None else pay_amt_fen) if result == "S" else 0,
        x_payee_acct_no=v.payee_acct_no,
        x_payee_acct_name=v.payee_acct_name,
        x_result=result,
        x_add_word=None if result == "S" else "收款账户已销户",
    )


def return_for(v: Voucher, amount_fen: int, notice: str = "2252450100000007") -> ReturnNotice:
    """A 2252 bringing `amount_fen` of `v` back."""
    return ReturnNotice(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code="2252",
        voucher_no=notice,
        ori_vt_code=v.vt_code,
        original_voucher_no=v.voucher_no,
        pay_amt_fen=-amount_fen,
        x_pay_date=date(2026, 11, 24),
        x_agent_business_no=f"ICBCR{notice}",
        remark="收款人账户已销户",
    )


def status_for(v: Voucher, x_status: int, pay_amt_fen: int | None = None) -> StatusReply:
    """A 9102 about `v`: 0 not received, 1 pending, 2 paid, 3 refused."""
    paid = x_status == 2
    return StatusReply(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code=v.vt_code,
        voucher_no=v.voucher_no,
        x_status=x_status,
        x_pay_date=WORK_DATE if paid else None,
        x_agent_business_no=f"ICBC{v.voucher_no}" if paid else None,
        x_pay_amt_fen=(v.pay_amt_fen if pay_amt_fen is None else pay_amt_fen) if paid else None,
        x_add_word="账户冻结" if x_status == 3 else None,
    )


@dataclass
class Desk:
    """The service seen from the tests: each call is one committed transaction."""

    engine: Engine
    bank: Bank

    def tx(self, fn: Callable[..., T], *args: Any) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args)

    def read(self, fn: Callable[[Connection], T]) -> T:
        with transaction(self.engine, read_only=True) as conn:
            return fn(conn)

    # finance side
    def submit(self, *items: Voucher, bank: str = "ICBC", now: datetime = T0) -> list[service.Submitted]:
        return self.tx(service.submit, [(bank, v) for v in items], "test:finance", now, NODE, ["ICBC", "CCB"])

    def grant(self, notice: Any = None) -> str:
        return self.tx(service.submit_quota_notice, "ICBC", notice or samples.quota_notice(), "test", T0, NODE)

    def cancel(self, v: Voucher, now: datetime = T0) -> State:
        return self.tx(service.cancel, v.key, "test:operator", "withdrawn", now)

    # dispatcher
    def claim(self, now: datetime = T0, resend: bool = False, bank: str = "ICBC") -> list[service.OutboxItem]:
        return self.tx(service.claim_outbox, bank, now, 100, "test-node", resend)

    def mark_sent(self, items: list[service.OutboxItem], now: datetime = T0, bank: str = "ICBC") -> Any:
        wires = {i.id: i.wire or f"<first send of {i.msg_id}/>".encode() for i in items}
        return self.tx(service.mark_sent, bank, wires, now, SETTINGS)

    def dispatch(self, now: datetime = T0, resend: bool = False) -> list[service.OutboxItem]:
        items = self.claim(now, resend)
        self.mark_sent(items, now)
        return items

    def tick(self, now: datetime) -> Any:
        return self.tx(service.tick, now, SETTINGS, NODE)

    # bank side
    def reply(self, msg_ref: str, result: int = 90000, ori: str = "5201", now: datetime = T0) -> service.Outcome:
        item = self.bank.inbound(
            Reply(ori_msg_no=ori, result=result, add_word="" if result == 90000 else "x"), msg_ref=msg_ref
        )
        return self.tx(service.handle_bank_reply, "ICBC", "c1", item, now)

    def status(self, query_msg_id: str, payload: StatusReply, now: datetime = T0) -> service.Outcome:
        item = self.bank.inbound(payload, msg_ref=query_msg_id)
        return self.tx(service.handle_bank_reply, "ICBC", "c1", item, now)

    def request(self, payload: Payload, msg_id: str | None = None, now: datetime = T0) -> service.Outcome:
        item = self.bank.inbound(payload, msg_id=msg_id)
        return self.tx(service.handle_request, "ICBC", "c1", item, now)

    # what is recorded
    def voucher(self, v: Voucher) -> repo.VoucherRecord:
        record = self.read(lambda c: repo.get_voucher_by_key(c, v.key))
        assert record is not None
        return record

    def state(self, v: Voucher) -> str:
        return self.voucher(v).state

    def events(self, v: Voucher) -> list[str]:
        voucher_id = self.voucher(v).id
        return [e.event for e in self.read(lambda c: repo.history(c, voucher_id))]

    def used(self) -> int:
        quota = self.read(lambda c: repo.get_quota(c, *AGENCY))
        return 0 if quota is None else quota.used_fen

    def outbox(self, msg_no: str | None = None) -> list[Any]:
        query = select(outbox).order_by(outbox.c.id)
        if msg_no is not None:
            query = query.where(outbox.c.msg_no == msg_no)
        return self.read(lambda c: list(c.execute(query).mappings()))

    def count(self, table: Any) -> int:
        return self.read(lambda c: int(c.execute(select(func.count()).select_from(table)).scalar_one()))

    def chains_ok(self) -> bool:
        return all_chains_verify(self.engine)


@pytest.fixture
def desk(db_engine: Engine, icbc: Bank) -> Desk:
    return Desk(db_engine, icbc)


def sent(desk: Desk, *items: Voucher) -> None:
    """Submit and dispatch."""
    desk.submit(*items)
    desk.dispatch()


def delivered(desk: Desk, *items: Voucher) -> None:
    """Submit, dispatch and acknowledge."""
    sent(desk, *items)
    for v in items:
        assert desk.reply(desk.voucher(v).msg_id or "").result == 90000


def paid(desk: Desk, *items: Voucher) -> None:
    delivered(desk, *items)
    for v in items:
        assert desk.request(receipt_for(v)).result == 90000


def in_doubt(desk: Desk, v: Voucher) -> str:
    """Send `v`, let its deadline pass; return the MsgId of the status query (9101) the tick enqueued."""
    sent(desk, v)
    desk.tick(at(SETTINGS.receipt_deadline_s))
    assert desk.state(v) == "IN_DOUBT"
    (query,) = desk.outbox("9101")
    return str(query["msg_id"])


# --- submit -------------------------------------------------------------------------------------------------------


def test_submit_records_the_voucher_its_history_and_its_outbox_row_together(desk: Desk) -> None:
    """One transaction: the voucher (ACCEPTED), its first history entry and a PENDING outbox row with its MsgId."""
    v = direct()
    (accepted,) = desk.submit(v)
    assert (accepted.key, accepted.bank) == (v.key, "ICBC")
    record = desk.voucher(v)
    assert (record.state, record.amount_fen, record.bank_code) == ("ACCEPTED", v.pay_amt_fen, "ICBC")
    (row,) = desk.outbox()
    assert (row["msg_id"], row["msg_no"], row["state"], row["voucher_id"]) == (
        record.msg_id,
        "5201",
        "PENDING",
        record.id,
    )
    assert desk.events(v) == ["submitted"]
    assert desk.chains_ok()


def test_submit_names_every_problem_of_every_voucher(desk: Desk) -> None:
    """A batch with several broken vouchers: one ValidationError naming each problem with its voucher's index."""
    wrong_pay_type = dataclasses.replace(direct(1), pay_type_code="12")
    wrong_sum = dataclasses.replace(direct(2), pay_amt_fen=1)
    with pytest.raises(ValidationError) as info:
        desk.tx(
            service.submit,
            [("ICBC", wrong_pay_type), ("ICBC", wrong_sum), ("BOC", direct(3))],
            "test",
            T0,
            NODE,
            ["ICBC", "CCB"],
        )
    fields = [p.field for p in info.value.problems]
    assert "vouchers[1]/Body/Voucher/PayTypeCode" in fields
    assert "vouchers[2]/Body/Voucher/PayAmt" in fields
    assert "vouchers[3]/bank" in fields
    assert "BOC" in str(info.value)
    assert desk.count(vouchers) == 0 and desk.count(outbox) == 0


def test_submit_is_all_or_nothing(desk: Desk) -> None:
    """One bad voucher in a batch: none of the batch is recorded."""
    with pytest.raises(ValidationError):
        desk.submit(direct(1), dataclasses.replace(direct(2), business_type_code="9"), direct(3))
    assert desk.count(vouchers) == 0 and desk.count(outbox) == 0


def test_a_voucher_key_already_recorded_is_refused(desk: Desk) -> None:
    """The voucher key is unique: submitting it again (even changed) is refused, naming VoucherNo."""
    desk.submit(direct())
    with pytest.raises(ValidationError) as info:
        desk.submit(direct(amount_fen=1_000))
    assert [p.field for p in info.value.problems] == ["vouchers[1]/VoucherNo"]
    assert desk.count(vouchers) == 1 and desk.count(outbox) == 1


def test_the_same_voucher_key_twice_in_one_batch_is_refused(desk: Desk) -> None:
    with pytest.raises(ValidationError) as info:
        desk.submit(direct(), direct())
    assert [p.field for p in info.value.problems] == ["vouchers[2]/VoucherNo"]
    assert desk.count(vouchers) == 0


def test_an_unknown_bank_is_refused(desk: Desk) -> None:
    with pytest.raises(ValidationError) as info:
        desk.submit(direct(), bank="BOC")
    assert [p.field for p in info.value.problems] == ["vouchers[1]/bank"]
    assert "ICBC" in info.value.problems[0].message  # it says what is configured
    assert desk.count(vouchers) == 0


@pytest.mark.parametrize(
    "change", [{"adm_div_code": "ABC"}, {"payee_acct_name": ""}, {"voucher_no": "5201 45/01"}], ids=str
)
def test_a_voucher_breaking_the_schema_is_refused(desk: Desk, change: dict[str, Any]) -> None:
    """The finance side's voucher is validated against the schema too, naming the field."""
    with pytest.raises(ValidationError) as info:
        desk.submit(dataclasses.replace(direct(), **change))
    assert info.value.problems
    assert desk.count(vouchers) == 0


# --- quota (8202) -------------------------------------------------------------------------------------------------


def test_a_quota_notice_grants_once(desk: Desk) -> None:
    """A 5106 grants its lines and goes to the bank; the same notice again grants nothing and is refused."""
    msg_id = desk.grant()
    quota = desk.read(lambda c: repo.get_quota(c, *AGENCY))
    assert quota is not None and (quota.granted_fen, quota.used_fen) == (QUOTA_FEN, 0)
    with pytest.raises(ValidationError) as info:
        desk.grant()
    assert [p.field for p in info.value.problems] == ["QuotaNotice/VoucherNo"]
    quota = desk.read(lambda c: repo.get_quota(c, *AGENCY))
    assert quota is not None and quota.granted_fen == QUOTA_FEN
    assert [(r["msg_no"], r["msg_id"]) for r in desk.outbox()] == [("5106", msg_id)]


def test_an_8202_uses_quota_and_one_exceeding_it_is_refused(desk: Desk) -> None:
    """An authorized voucher spends its agency's quota; one asking more than is left is refused, naming PayAmt."""
    desk.grant()
    desk.submit(authorized(1, 30_000_000))
    assert desk.used() == 30_000_000
    with pytest.raises(ValidationError) as info:
        desk.submit(authorized(2, 20_000_001))
    assert [p.field for p in info.value.problems] == ["vouchers[1]/PayAmt"]
    assert "quota" in info.value.problems[0].message
    assert desk.used() == 30_000_000 and desk.count(vouchers) == 1
    desk.submit(authorized(3, 20_000_000))  # exactly what is left
    assert desk.used() == QUOTA_FEN


def test_an_8202_without_quota_is_refused(desk: Desk) -> None:
    with pytest.raises(ValidationError):
        desk.submit(authorized())
    assert desk.count(vouchers) == 0


def test_a_5201_uses_no_quota(desk: Desk) -> None:
    desk.submit(direct())
    assert desk.used() == 0


def _fail(desk: Desk, v: Voucher) -> None:
    delivered(desk, v)
    assert desk.request(receipt_for(v, "F")).result == 90000


def _reject(desk: Desk, v: Voucher) -> None:
    sent(desk, v)
    desk.reply(desk.voucher(v).msg_id or "", result=91002)


def _cancel(desk: Desk, v: Voucher) -> None:
    desk.submit(v)
    desk.cancel(v)


def _return_all(desk: Desk, v: Voucher) -> None:
    paid(desk, v)
    assert desk.request(return_for(v, v.pay_amt_fen)).result == 90000


def _status_refused(desk: Desk, v: Voucher) -> None:
    query = in_doubt(desk, v)
    desk.status(query, status_for(v, 3))


@pytest.mark.parametrize(
    ("flow", "final"),
    [
        (_fail, "FAILED"),
        (_reject, "REJECTED"),
        (_cancel, "CANCELLED"),
        (_return_all, "RETURNED"),
        (_status_refused, "FAILED"),
    ],
    ids=["receipt-F", "nak", "cancel", "full-return", "status-refused"],
)
def test_quota_comes_back_when_an_8202_does_not_pay(
    desk: Desk, flow: Callable[[Desk, Voucher], None], final: str
) -> None:
    """FAILED, REJECTED, CANCELLED and RETURNED give the voucher's amount back to the agency's quota."""
    desk.grant()
    v = authorized()
    flow(desk, v)
    assert desk.state(v) == final
    assert desk.used() == 0
    assert desk.chains_ok()


def test_a_partial_return_gives_back_that_part_of_the_quota(desk: Desk) -> None:
    desk.grant()
    v = authorized(amount_fen=1_000_000)
    paid(desk, v)
    desk.request(return_for(v, 250_000))
    assert desk.used() == 750_000


def test_a_paid_8202_keeps_its_quota(desk: Desk) -> None:
    desk.grant()
    v = authorized()
    paid(desk, v)
    assert desk.used() == v.pay_amt_fen


def test_a_status_reply_paying_part_of_an_8202_releases_the_rest(desk: Desk) -> None:
    """An in-doubt card repayment the bank reports as partly paid: the agency keeps only what was paid, as after
    a receipt (this failed at 8abcffd: apply_status never released the unpaid part)."""
    desk.grant()
    v = samples.card_repayment()
    query = in_doubt(desk, v)
    desk.status(query, status_for(v, 2, pay_amt_fen=86_000))
    assert desk.state(v) == "PAID"
    assert desk.used() == 86_000


# --- cancel -------------------------------------------------------------------------------------------------------


def test_cancel_before_sending_withdraws_the_voucher_and_its_message(desk: Desk) -> None:
    v = direct()
    desk.submit(v)
    assert desk.cancel(v) is State.CANCELLED
    assert desk.state(v) == "CANCELLED"
    assert [r["state"] for r in desk.outbox()] == ["NACKED"]
    assert desk.claim(at(3600), resend=True) == []
    assert desk.events(v) == ["submitted", "cancel"]
    assert desk.chains_ok()


@pytest.mark.parametrize("stage", [sent, delivered, paid], ids=["sent", "delivered", "paid"])
def test_cancel_after_sending_is_refused(desk: Desk, stage: Callable[[Desk, Voucher], None]) -> None:
    v = direct()
    stage(desk, v)
    before = desk.state(v)
    with pytest.raises(service.Refused):
        desk.cancel(v)
    assert desk.state(v) == before


def test_cancel_of_an_unknown_voucher_is_refused(desk: Desk) -> None:
    with pytest.raises(service.Refused) as info:
        desk.cancel(direct())
    assert str(direct().key) in info.value.add_word


def test_a_cancel_between_claim_and_send_keeps_the_voucher_from_the_bank(desk: Desk) -> None:
    v = direct()
    desk.submit(v)
    items = desk.claim()
    desk.cancel(v)
    desk.mark_sent(items)
    assert desk.state(v) == "CANCELLED"
    assert [r["state"] for r in desk.outbox()] == ["NACKED"]


# --- the dispatcher: claim_outbox / mark_sent ---------------------------------------------------------------------


def test_first_send_marks_the_voucher_sent_with_a_deadline(desk: Desk) -> None:
    v = direct()
    desk.submit(v)
    (item,) = desk.claim()
    assert item.wire is None and item.msg_id == desk.voucher(v).msg_id
    assert item.message.body == v and item.message.head.msg_id == item.msg_id
    assert (item.message.head.src, item.message.head.des) == (NODE, "ICBC")
    desk.mark_sent([item])
    record = desk.voucher(v)
    assert record.state == "SENT"
    assert record.deadline_at == at(SETTINGS.receipt_deadline_s)
    (row,) = desk.outbox()
    assert (row["state"], row["attempts"]) == ("SENT", 1)
    assert row["next_attempt_at"] == at(SETTINGS.ack_timeout_s)
    assert bytes(row["wire"]) == f"<first send of {item.msg_id}/>".encode()
    assert desk.events(v) == ["submitted", "dispatch"]
    outbound = desk.read(lambda c: list(c.execute(select(archive).where(archive.c.direction == "out")).mappings()))
    assert [(a["msg_id"], bytes(a["raw"])) for a in outbound] == [(item.msg_id, bytes(row["wire"]))]


def test_an_unacknowledged_message_is_resent_with_the_same_msg_id_and_bytes_after_a_backoff(desk: Desk) -> None:
    """Not due before the ack timeout; then resent with its first bytes; the backoff doubles up to its maximum."""
    v = direct()
    desk.submit(v)
    (first,) = desk.dispatch()
    wire = bytes(desk.outbox()[0]["wire"])
    assert desk.claim(at(SETTINGS.ack_timeout_s - 1)) == []
    (again,) = desk.claim(at(SETTINGS.ack_timeout_s))
    assert (again.msg_id, again.wire) == (first.msg_id, wire)
    desk.tx(service.mark_sent, "ICBC", {again.id: b"<other bytes/>"}, at(SETTINGS.ack_timeout_s), SETTINGS)
    (row,) = desk.outbox()
    assert bytes(row["wire"]) == wire and row["attempts"] == 2
    second_delay = min(SETTINGS.resend_backoff_max_s, SETTINGS.resend_backoff_initial_s)
    assert row["next_attempt_at"] == at(SETTINGS.ack_timeout_s + second_delay)
    now = SETTINGS.ack_timeout_s + second_delay
    desk.mark_sent(desk.claim(at(now)), at(now))
    (row,) = desk.outbox()
    assert row["attempts"] == 3
    assert row["next_attempt_at"] == at(now + min(SETTINGS.resend_backoff_max_s, 2 * SETTINGS.resend_backoff_initial_s))
    assert desk.state(v) == "SENT"
    assert desk.events(v) == ["submitted", "dispatch", "resent", "resent"]
    assert desk.chains_ok()


def test_the_first_wait_is_the_ack_timeout_then_the_resend_backoff_doubles_to_its_maximum(desk: Desk) -> None:
    """docs/protocol.md §7: ack_timeout_s after the first send, then resend_backoff_initial_s, doubling, capped."""
    settings = PaymentSettings(ack_timeout_s=30.0, resend_backoff_initial_s=5.0, resend_backoff_max_s=60.0)
    desk.submit(direct())
    now, waits = 0.0, []
    for _ in range(7):
        (item,) = desk.claim(at(now))
        desk.tx(service.mark_sent, "ICBC", {item.id: b"<sent/>"}, at(now), settings)
        (row,) = desk.outbox()
        waits.append((row["next_attempt_at"] - at(now)).total_seconds())
        now += waits[-1]
    assert waits == [30.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert [service.resend_delay_s(PaymentSettings(), n) for n in (1, 2, 3, 4)] == [30.0, 30.0, 60.0, 60.0]


def test_a_fresh_sign_on_resends_every_unacknowledged_message_at_once(desk: Desk) -> None:
    desk.submit(direct(1), direct(2))
    first = desk.dispatch()
    assert desk.claim(at(1)) == []
    again = desk.claim(at(1), resend=True)
    assert [i.msg_id for i in again] == [i.msg_id for i in first]


def test_claims_are_per_bank_oldest_first_and_limited(desk: Desk) -> None:
    desk.submit(direct(1), direct(2), direct(3))
    desk.submit(direct(4), bank="CCB")
    items = desk.tx(service.claim_outbox, "ICBC", T0, 2, "n", False)
    assert [i.message.body.voucher_no for i in items] == [direct(1).voucher_no, direct(2).voucher_no]  # type: ignore[attr-defined]
    assert [i.message.head.des for i in desk.claim(bank="CCB")] == ["CCB"]


def test_an_acknowledged_message_is_not_resent(desk: Desk) -> None:
    delivered(desk, direct())
    assert desk.claim(at(3600), resend=True) == []


# --- handle_bank_reply ----------------------------------------------------------------------------------------------


def test_an_ack_delivers_the_voucher(desk: Desk) -> None:
    v = direct()
    sent(desk, v)
    outcome = desk.reply(desk.voucher(v).msg_id or "")
    assert outcome.result == 90000 and [e[1]["state"] for e in outcome.events] == ["DELIVERED"]
    assert desk.state(v) == "DELIVERED"
    assert [(r["state"], r["result_code"]) for r in desk.outbox()] == [("ACKED", 90000)]
    assert desk.chains_ok()


def test_a_nak_rejects_the_voucher_with_the_reason(desk: Desk) -> None:
    v = direct()
    sent(desk, v)
    desk.reply(desk.voucher(v).msg_id or "", result=91002)
    record = desk.voucher(v)
    assert (record.state, record.reason) == ("REJECTED", "x")
    assert [(r["state"], r["result_code"]) for r in desk.outbox()] == [("NACKED", 91002)]
    assert desk.chains_ok()


def test_a_temporary_failure_keeps_the_message_sent_for_a_resend(desk: Desk) -> None:
    """91099 from the bank: nothing settles; the row stays SENT and goes again after its backoff."""
    v = direct()
    sent(desk, v)
    desk.reply(desk.voucher(v).msg_id or "", result=91099)
    assert desk.state(v) == "SENT"
    assert [r["state"] for r in desk.outbox()] == ["SENT"]
    assert len(desk.claim(at(SETTINGS.ack_timeout_s))) == 1


def test_a_reply_to_an_unknown_msg_id_raises_an_alert_and_changes_nothing(desk: Desk) -> None:
    v = direct()
    sent(desk, v)
    outcome = desk.reply("NOSUCHMSGID")
    assert outcome.result == 90000
    assert [kind for kind, _ in outcome.events] == ["alert"]
    assert "NOSUCHMSGID" in outcome.events[0][1]["reason"]
    assert desk.state(v) == "SENT" and [r["state"] for r in desk.outbox()] == ["SENT"]


def test_a_duplicate_ack_changes_nothing(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    history = desk.events(v)
    assert desk.reply(desk.voucher(v).msg_id or "").events == []
    assert desk.reply(desk.voucher(v).msg_id or "", result=91002).events == []  # a late nak cannot undo it
    assert desk.state(v) == "DELIVERED" and desk.events(v) == history


def test_a_receipt_may_overtake_the_ack(desk: Desk) -> None:
    """SENT → PAID directly; the late ack then changes nothing."""
    v = direct()
    sent(desk, v)
    assert desk.request(receipt_for(v)).result == 90000
    assert desk.state(v) == "PAID"
    assert [r["state"] for r in desk.outbox()] == ["ACKED"]  # the receipt proves delivery: no resend
    desk.reply(desk.voucher(v).msg_id or "")
    assert desk.state(v) == "PAID"
    assert desk.chains_ok()


# --- handle_request: idempotency ------------------------------------------------------------------------------------


def test_the_same_msg_id_with_the_same_content_gets_the_same_answer_and_changes_nothing(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    item = desk.bank.inbound(receipt_for(v))
    first = desk.tx(service.handle_request, "ICBC", "c1", item, T0)
    history = desk.events(v)
    archived = desk.count(archive)
    again = desk.tx(service.handle_request, "ICBC", "c2", item, at(5))
    assert (again.result, again.add_word) == (first.result, first.add_word) == (90000, "")
    assert again.events == [] and not again.kick
    assert desk.events(v) == history and desk.count(inbound) == 1
    assert desk.count(archive) == archived + 1  # the repeat is archived, byte for byte, with its answer


def test_a_refused_request_repeated_gets_the_same_refusal(desk: Desk) -> None:
    item = desk.bank.inbound(receipt_for(direct()))  # no such voucher
    first = desk.tx(service.handle_request, "ICBC", "c1", item, T0)
    again = desk.tx(service.handle_request, "ICBC", "c1", item, T0)
    assert first.result == again.result == 91006 and first.add_word == again.add_word != ""
    assert desk.count(inbound) == 1


def test_the_same_msg_id_with_other_content_is_91005(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    desk.request(receipt_for(v), msg_id="ICBC-R-1")
    outcome = desk.request(receipt_for(v, "F"), msg_id="ICBC-R-1")
    assert outcome.result == 91005 and "ICBC-R-1" in outcome.add_word
    assert desk.state(v) == "PAID" and desk.count(inbound) == 1


def test_the_same_msg_id_from_another_bank_is_another_message(desk: Desk, config: Any) -> None:
    """MsgId is the idempotency key per sender."""
    v = direct()
    delivered(desk, v)
    desk.request(receipt_for(v), msg_id="SAME-ID")
    ccb = make_bank(config, "CCB")
    item = ccb.inbound(receipt_for(direct(9)), msg_id="SAME-ID")
    outcome = desk.tx(service.handle_request, "CCB", "c9", item, T0)
    assert outcome.result == 91006  # processed on its own (and refused: CCB has no such voucher), not 91005
    assert desk.count(inbound) == 2


# --- receipts -------------------------------------------------------------------------------------------------------


def test_a_paid_receipt_pays_once(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    outcome = desk.request(receipt_for(v, serial="ICBC2026112300004711"))
    assert outcome.result == 90000 and outcome.kick
    record = desk.voucher(v)
    assert (record.state, record.x_agent_business_no, record.x_pay_amt_fen) == (
        "PAID",
        "ICBC2026112300004711",
        v.pay_amt_fen,
    )
    assert record.x_pay_date == WORK_DATE
    assert desk.events(v).count("receipt_paid") == 1
    assert desk.chains_ok()


def test_a_refused_receipt_fails_the_voucher_with_its_reason(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    assert desk.request(receipt_for(v, "F")).result == 90000
    record = desk.voucher(v)
    assert (record.state, record.reason) == ("FAILED", "收款账户已销户")


@pytest.mark.parametrize("result", ["S", "F"])
def test_a_repeated_receipt_that_agrees_is_90000_and_changes_nothing(desk: Desk, result: str) -> None:
    v = direct()
    delivered(desk, v)
    desk.request(receipt_for(v, result))
    history = desk.events(v)
    outcome = desk.request(receipt_for(v, result))  # a new MsgId
    assert (outcome.result, outcome.events) == (90000, [])
    assert desk.events(v) == history


@pytest.mark.parametrize(
    ("first", "second"),
    [(("S", "A1"), ("F", None)), (("F", None), ("S", "A1")), (("S", "A1"), ("S", "A2"))],
    ids=["paid-then-refused", "refused-then-paid", "paid-under-another-serial"],
)
def test_a_receipt_contradicting_the_recorded_result_is_91006_and_an_alert(
    desk: Desk, first: tuple[str, str | None], second: tuple[str, str | None]
) -> None:
    v = direct()
    delivered(desk, v)
    desk.request(receipt_for(v, first[0], serial=first[1]))
    state = desk.state(v)
    outcome = desk.request(receipt_for(v, second[0], serial=second[1]))
    assert outcome.result == 91006
    assert [kind for kind, _ in outcome.events] == ["alert"]
    assert desk.state(v) == state
    assert desk.chains_ok()


def test_a_receipt_with_another_amount_is_91006(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    outcome = desk.request(receipt_for(v, pay_amt_fen=v.pay_amt_fen - 1))
    assert outcome.result == 91006 and "PayAmt" in outcome.add_word
    assert desk.state(v) == "DELIVERED"


def test_a_receipt_for_another_banks_voucher_is_91006(desk: Desk) -> None:
    v = direct()
    desk.submit(v, bank="CCB")
    outcome = desk.request(receipt_for(v))
    assert outcome.result == 91006 and "unknown voucher" in outcome.add_word
    assert desk.state(v) == "ACCEPTED"


def test_a_receipt_for_a_voucher_never_sent_is_91006(desk: Desk) -> None:
    v = direct()
    desk.submit(v)
    assert desk.request(receipt_for(v)).result == 91006
    assert desk.state(v) == "ACCEPTED"


# --- returns (2252) ---------------------------------------------------------------------------------------------------


def test_a_partial_return_keeps_the_voucher_paid(desk: Desk) -> None:
    v = direct()
    paid(desk, v)
    assert desk.request(return_for(v, 2_500_000)).result == 90000
    record = desk.voucher(v)
    assert (record.state, record.returned_fen) == ("PAID", 2_500_000)
    assert desk.chains_ok()


def test_returns_adding_up_to_the_paid_amount_make_it_returned(desk: Desk) -> None:
    v = direct()
    paid(desk, v)
    desk.request(return_for(v, 2_500_000, "2252450100000001"))
    desk.request(return_for(v, v.pay_amt_fen - 2_500_000, "2252450100000002"))
    record = desk.voucher(v)
    assert (record.state, record.returned_fen) == ("RETURNED", v.pay_amt_fen)
    assert desk.events(v)[-2:] == ["returned_part", "returned_all"]
    assert desk.chains_ok()


def test_returns_beyond_the_paid_amount_are_91006(desk: Desk) -> None:
    v = direct()
    paid(desk, v)
    desk.request(return_for(v, v.pay_amt_fen - 100, "2252450100000001"))
    outcome = desk.request(return_for(v, 101, "2252450100000002"))
    assert outcome.result == 91006
    assert desk.voucher(v).returned_fen == v.pay_amt_fen - 100


def test_the_same_return_notice_twice_is_applied_once(desk: Desk) -> None:
    v = direct()
    paid(desk, v)
    desk.request(return_for(v, 1_000_000))
    outcome = desk.request(return_for(v, 1_000_000))  # the same notice under a new MsgId
    assert outcome.result == 90000
    assert desk.voucher(v).returned_fen == 1_000_000


def test_the_same_full_return_notice_twice_is_applied_once(desk: Desk) -> None:
    v = direct()
    paid(desk, v)
    desk.request(return_for(v, v.pay_amt_fen))
    outcome = desk.request(return_for(v, v.pay_amt_fen))
    assert (outcome.result, outcome.events) == (90000, [])
    assert desk.state(v) == "RETURNED"


def test_a_return_of_a_voucher_not_paid_is_91006(desk: Desk) -> None:
    v = direct()
    delivered(desk, v)
    assert desk.request(return_for(v, 1)).result == 91006
    assert desk.voucher(v).returned_fen == 0


# --- tick: deadlines and status queries -------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [sent, delivered], ids=["sent", "delivered"])
def test_a_voucher_past_its_deadline_goes_in_doubt_and_one_status_query_is_enqueued(
    desk: Desk, stage: Callable[[Desk, Voucher], None]
) -> None:
    v = direct()
    stage(desk, v)
    assert desk.tick(at(SETTINGS.receipt_deadline_s - 1)) == []
    assert desk.state(v) != "IN_DOUBT"
    events = desk.tick(at(SETTINGS.receipt_deadline_s))
    assert [e[1]["state"] for e in events] == ["IN_DOUBT"]
    desk.tick(at(SETTINGS.receipt_deadline_s))
    desk.tick(at(SETTINGS.receipt_deadline_s + SETTINGS.status_query_interval_s))  # the query is still open
    queries = desk.outbox("9101")
    assert len(queries) == 1 and queries[0]["voucher_id"] == desk.voucher(v).id
    assert desk.events(v).count("deadline") == 1
    assert desk.chains_ok()


def test_a_voucher_in_doubt_is_not_resent_only_asked_about(desk: Desk) -> None:
    """The voucher's own outbox row is stopped; the dispatcher now claims only the 9101."""
    v = direct()
    in_doubt(desk, v)
    (voucher_row,) = desk.outbox("5201")
    assert voucher_row["state"] == "NACKED"
    claimed = desk.claim(at(3600), resend=True)
    assert [i.message.head.msg_no for i in claimed] == ["9101"]
    assert claimed[0].message.body.voucher_no == v.voucher_no  # type: ignore[attr-defined]


def test_a_status_query_answered_pending_is_asked_again_later(desk: Desk) -> None:
    v = direct()
    query = in_doubt(desk, v)
    desk.dispatch(at(SETTINGS.receipt_deadline_s))
    desk.status(query, status_for(v, 1), at(SETTINGS.receipt_deadline_s + 1))
    assert desk.state(v) == "IN_DOUBT"
    desk.tick(at(SETTINGS.receipt_deadline_s + SETTINGS.status_query_interval_s))
    assert [r["state"] for r in desk.outbox("9101")] == ["ACKED", "PENDING"]
    assert desk.chains_ok()


def test_status_paid_pays(desk: Desk) -> None:
    v = direct()
    query = in_doubt(desk, v)
    outcome = desk.status(query, status_for(v, 2))
    assert outcome.kick
    record = desk.voucher(v)
    assert (record.state, record.x_agent_business_no, record.x_pay_amt_fen) == (
        "PAID",
        f"ICBC{v.voucher_no}",
        v.pay_amt_fen,
    )
    assert [r["state"] for r in desk.outbox("9101")] == ["ACKED"]
    assert desk.chains_ok()


def test_status_refused_fails(desk: Desk) -> None:
    v = direct()
    query = in_doubt(desk, v)
    desk.status(query, status_for(v, 3))
    record = desk.voucher(v)
    assert (record.state, record.reason) == ("FAILED", "账户冻结")


def test_status_not_received_sends_the_original_again_with_the_same_msg_id(desk: Desk) -> None:
    """XStatus 0: back to ACCEPTED, and the voucher's own outbox row is PENDING again with its MsgId and bytes."""
    v = direct()
    query = in_doubt(desk, v)
    (original,) = desk.outbox("5201")
    desk.status(query, status_for(v, 0), at(SETTINGS.receipt_deadline_s + 1))
    assert desk.state(v) == "ACCEPTED"
    (row,) = desk.outbox("5201")
    assert (row["state"], row["msg_id"], bytes(row["wire"])) == ("PENDING", original["msg_id"], bytes(original["wire"]))
    resent = [i for i in desk.claim(at(SETTINGS.receipt_deadline_s + 1)) if i.message.head.msg_no == "5201"]
    assert [(i.msg_id, i.wire) for i in resent] == [(original["msg_id"], bytes(original["wire"]))]
    desk.mark_sent(resent, at(SETTINGS.receipt_deadline_s + 1))
    record = desk.voucher(v)
    assert record.state == "SENT" and record.deadline_at == at(2 * SETTINGS.receipt_deadline_s + 1)
    assert desk.chains_ok()


def test_a_status_reply_for_a_voucher_not_in_doubt_changes_nothing(desk: Desk) -> None:
    v = direct()
    query = in_doubt(desk, v)
    desk.request(receipt_for(v))  # the receipt settled it first
    assert desk.status(query, status_for(v, 3)).events == []
    assert desk.state(v) == "PAID"


def test_a_late_ack_after_status_not_received_does_not_strand_the_voucher(desk: Desk) -> None:
    v = direct()
    query = in_doubt(desk, v)
    desk.status(query, status_for(v, 0), at(SETTINGS.receipt_deadline_s + 1))
    desk.reply(desk.voucher(v).msg_id or "", now=at(SETTINGS.receipt_deadline_s + 2))
    record = desk.voucher(v)
    will_be_sent = [r for r in desk.outbox("5201") if r["state"] in ("PENDING", "SENT")]
    waits_with_deadline = record.state in ("SENT", "DELIVERED") and record.deadline_at is not None
    assert will_be_sent or waits_with_deadline, f"{record.state}, deadline {record.deadline_at}, nothing to send"


# --- a state machine over the whole service (SQLite) ----------------------------------------------------------------

MACHINE_VOUCHERS = (
    direct(901, 1_000_000),
    direct(902, 2_000_000),
    authorized(903, 3_000_000),
    authorized(904, 4_000_000),
)
UNSETTLED_QUOTA = ("FAILED", "REJECTED", "CANCELLED")


class ServiceMachine(RuleBasedStateMachine):
    """Random interleavings of what the finance side, the dispatcher, the clock and a (possibly confused) bank
    do to a handful of vouchers; after every step the store must still tell a consistent, provable story."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        with engine.begin() as conn:
            for table in reversed(ALL_TABLES):
                conn.execute(table.delete())
            service.submit_quota_notice(conn, "ICBC", samples.quota_notice(), "test", T0, NODE)
        self.now = T0
        self.seq = 0
        self.submitted: set[int] = set()
        self.answers: dict[str, tuple[Inbound, int, str]] = {}  # MsgId → (request, Result, AddWord)

    # helpers
    def tx(self, fn: Callable[..., T], *args: Any) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args)

    def inbound(self, payload: Payload, msg_ref: str | None = None, msg_id: str | None = None) -> Inbound:
        self.seq += 1
        msg_id = msg_id or f"ICBCM{self.seq:08d}"
        head = Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_id if msg_ref is None else msg_ref,
            src="ICBC",
            des=NODE,
            work_date=WORK_DATE,
            send_time=datetime(2026, 11, 23, 10, 30),
        )
        return quick_inbound(Message(head, payload))

    def record(self, i: int) -> repo.VoucherRecord | None:
        with transaction(self.engine, read_only=True) as conn:
            return repo.get_voucher_by_key(conn, MACHINE_VOUCHERS[i].key)

    def request(self, payload: Payload) -> None:
        item = self.inbound(payload)
        outcome = self.tx(service.handle_request, "ICBC", "c1", item, self.now)
        assert outcome.result in (90000, 91006), outcome
        self.answers[item.message.head.msg_id] = (item, outcome.result, outcome.add_word)

    # rules
    @initialize(first=st.integers(1, 4))
    def submit_some(self, first: int) -> None:
        """Start with some vouchers submitted (the others may come later)."""
        for i in range(first):
            self.submit(i)

    @rule(i=st.integers(0, 3))
    def submit(self, i: int) -> None:
        if i in self.submitted:
            with pytest.raises(ValidationError):
                self.tx(service.submit, [("ICBC", MACHINE_VOUCHERS[i])], "test", self.now, NODE, ["ICBC"])
            return
        self.tx(service.submit, [("ICBC", MACHINE_VOUCHERS[i])], "test", self.now, NODE, ["ICBC"])
        self.submitted.add(i)

    @rule(resend=st.booleans())
    def dispatch(self, resend: bool) -> None:
        items = self.tx(service.claim_outbox, "ICBC", self.now, 100, "node", resend)
        wires = {item.id: item.wire or item.msg_id.encode() for item in items}
        self.tx(service.mark_sent, "ICBC", wires, self.now, SETTINGS)

    @rule(seconds=st.sampled_from([31, 301]))
    def time_passes(self, seconds: int) -> None:
        """The hub's tick: deadlines and status queries, then the dispatcher."""
        self.now += timedelta(seconds=seconds)
        self.tx(service.tick, self.now, SETTINGS, NODE)
        self.dispatch(resend=False)

    @rule(i=st.integers(0, 3), result=st.sampled_from([90000, 90000, 91002, 91099]))
    def bank_replies(self, i: int, result: int) -> None:
        record = self.record(i)
        msg_ref = record.msg_id if record is not None and record.msg_id else "UNKNOWN"
        reply = Reply(ori_msg_no=MACHINE_VOUCHERS[i].vt_code, result=result, add_word="" if result == 90000 else "x")
        self.tx(service.handle_bank_reply, "ICBC", "c1", self.inbound(reply, msg_ref=msg_ref), self.now)

    @rule(i=st.integers(0, 3), result=st.sampled_from("SF"), serial=st.sampled_from("AB"))
    def receipt(self, i: int, result: str, serial: str) -> None:
        self.request(receipt_for(MACHINE_VOUCHERS[i], result, serial=f"ICBC{serial}{i}"))

    @rule(i=st.integers(0, 3), fraction=st.sampled_from([4, 2, 1]), notice=st.integers(1, 3))
    def bank_returns(self, i: int, fraction: int, notice: int) -> None:
        v = MACHINE_VOUCHERS[i]
        self.request(return_for(v, v.pay_amt_fen // fraction, f"2252{i}{notice:011d}"))

    @rule(i=st.integers(0, 3), x_status=st.integers(0, 3))
    def status_reply(self, i: int, x_status: int) -> None:
        record = self.record(i)
        queries = (
            []
            if record is None
            else [r for r in self.outbox() if r["voucher_id"] == record.id and r["msg_no"] == "9101"]
        )
        msg_ref = queries[-1]["msg_id"] if queries else "NOQUERY"
        item = self.inbound(status_for(MACHINE_VOUCHERS[i], x_status), msg_ref=msg_ref)
        self.tx(service.handle_bank_reply, "ICBC", "c1", item, self.now)

    @rule(i=st.integers(0, 3))
    def cancel(self, i: int) -> None:
        record = self.record(i)
        if record is None or record.state != "ACCEPTED":
            with pytest.raises(service.Refused):
                self.tx(service.cancel, MACHINE_VOUCHERS[i].key, "test", "", self.now)
        else:
            assert self.tx(service.cancel, MACHINE_VOUCHERS[i].key, "test", "", self.now) is State.CANCELLED

    @rule(n=st.integers(0, 1_000))
    def bank_repeats_a_request(self, n: int) -> None:
        """The same MsgId and content again: the recorded answer, nothing else."""
        if not self.answers:
            return
        item, result, add_word = list(self.answers.values())[n % len(self.answers)]
        before = self.snapshot()
        outcome = self.tx(service.handle_request, "ICBC", "c2", item, self.now)
        assert (outcome.result, outcome.add_word) == (result, add_word)
        assert self.snapshot() == before

    @rule(n=st.integers(0, 1_000), i=st.integers(0, 3))
    def bank_reuses_a_msg_id(self, n: int, i: int) -> None:
        """The same MsgId with other content: 91005, nothing else."""
        if not self.answers:
            return
        msg_id = list(self.answers)[n % len(self.answers)]
        item = self.inbound(receipt_for(MACHINE_VOUCHERS[i], serial=f"OTHER{n}"), msg_id=msg_id)
        before = self.snapshot()
        assert self.tx(service.handle_request, "ICBC", "c2", item, self.now).result == 91005
        assert self.snapshot() == before

    # what must always hold
    def outbox(self) -> list[Any]:
        with transaction(self.engine, read_only=True) as conn:
            return list(conn.execute(select(outbox).order_by(outbox.c.id)).mappings())

    def snapshot(self) -> Any:
        with transaction(self.engine, read_only=True) as conn:
            rows = conn.execute(select(vouchers).order_by(vouchers.c.id)).mappings()
            return [(r["state"], r["version"], r["returned_fen"]) for r in rows], repo.get_quota(conn, *AGENCY)

    @invariant()
    def the_store_tells_a_consistent_story(self) -> None:
        with transaction(self.engine, read_only=True) as conn:
            rows = list(conn.execute(select(vouchers)).mappings())
            messages = list(conn.execute(select(outbox)).mappings())
            entries = list(
                conn.execute(
                    select(voucher_history).order_by(voucher_history.c.voucher_id, voucher_history.c.seq)
                ).mappings()
            )
            quota = repo.get_quota(conn, *AGENCY)
            live_8202 = 0
            for row in rows:
                assert repo.verify_chain(conn, row["id"]), row["voucher_no"]
                history = [e for e in entries if e["voucher_id"] == row["id"]]
                for entry in history[1:]:
                    if entry["event"] == "resent":
                        assert entry["from_state"] == entry["to_state"] == "SENT"
                    else:
                        transition = (State(entry["from_state"]), Event(entry["event"]))
                        assert TRANSITIONS.get(transition) == State(entry["to_state"]), dict(entry)
                entered_paid = [e for e in history if e["to_state"] == "PAID" and e["from_state"] != "PAID"]
                assert len(entered_paid) <= 1, f"{row['voucher_no']} was paid {len(entered_paid)} times"
                assert row["returned_fen"] <= (row["x_pay_amt_fen"] or 0)
                if row["vt_code"] == "8202" and row["state"] not in UNSETTLED_QUOTA:
                    spent = row["x_pay_amt_fen"] if row["state"] in ("PAID", "RETURNED") else row["amount_fen"]
                    live_8202 += spent - row["returned_fen"]
                own = [r for r in messages if r["voucher_id"] == row["id"] and r["msg_no"] == row["vt_code"]]
                assert [r["msg_id"] for r in own] == [row["msg_id"]]  # one message, one MsgId, whatever is resent
            assert quota is not None and quota.used_fen == live_8202


def test_the_service_keeps_its_promises_under_any_interleaving(sqlite_db_url: str) -> None:
    """Paid at most once, only legal transitions, quota = what live 8202s hold, every chain proves itself."""
    engine = create_engine_for(sqlite_db_url)
    try:
        run_state_machine_as_test(
            lambda: ServiceMachine(engine),
            settings=settings(max_examples=50, stateful_step_count=40, deadline=None),
        )
    finally:
        engine.dispose()
