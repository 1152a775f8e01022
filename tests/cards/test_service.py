"""The card service on the store: spending in, review rules, repayment out, per-detail results, on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import select

from gateway.cards import queries, service
from gateway.cards.service import Ref
from gateway.config import PaymentSettings
from gateway.store.tables import archive, card_events, card_spending, outbox
from protocols.errors import ResultCode, ValidationError
from protocols.messages import CardSpending, SpendRecord, Voucher
from tests.cards.conftest import ADM, EDUCATION, HEALTH, NODE, Cards, card_number, zero_balance

OK = int(ResultCode.OK)
REFUSED = int(ResultCode.REFUSED)


def _all_text(cards: Cards) -> str:
    """Every value of the card tables, as text."""
    rows = cards.tx(
        lambda conn: [
            *conn.execute(select(card_spending)).all(),
            *conn.execute(select(card_events)).all(),
        ]
    )
    return json.dumps([[str(v) for v in row] for row in rows], ensure_ascii=False)


# --- spending in ---------------------------------------------------------------------------------------------


def test_spending_is_stored_with_the_card_masked_and_hashed(cards: Cards) -> None:
    """A 7101 is acknowledged and stored; the card number appears nowhere but in the signed message archive."""
    a, b = cards.spend(card=7), cards.spend(card=7, amount_fen=42_800)
    outcome = cards.push("ICBC", [a, b])
    assert outcome.result == OK
    first, second = cards.record(a), cards.record(b)
    assert first["state"] == second["state"] == "RECEIVED"
    assert first["card_masked"] == "628288*********0007"
    assert first["card_hash"] == second["card_hash"] and len(first["card_hash"]) == 64
    assert (first["amount_fen"], first["agency_code"], first["limit_date"]) == (86_000, HEALTH, a.limit_date)
    assert card_number(7) not in _all_text(cards)
    raw = cards.tx(lambda conn: conn.execute(select(archive.c.raw).where(archive.c.msg_no == "7101")).scalar_one())
    assert card_number(7).encode() in bytes(raw)
    kinds = [kind for kind, _ in outcome.events]
    assert kinds == ["cards"] and outcome.events[0][1]["new"] == 2


def test_different_cards_hash_differently_and_the_key_is_per_instance(cards: Cards) -> None:
    """Two cards never share a hash; the hash is keyed (not a bare SHA-256 of the number)."""
    import hashlib

    a, b = cards.spend(card=1), cards.spend(card=2)
    cards.push("ICBC", [a, b])
    assert cards.record(a)["card_hash"] != cards.record(b)["card_hash"]
    assert cards.record(a)["card_hash"] != hashlib.sha256(card_number(1).encode()).hexdigest()


def test_the_daily_batch_repeats_real_time_pushes_without_duplicates(cards: Cards) -> None:
    """The same SpendId in a later 7101 (the daily batch) is recognised: one record, counted as a duplicate."""
    a, b, c = cards.spend(), cards.spend(), cards.spend()
    cards.push("ICBC", [a])
    cards.push("ICBC", [b])
    batch = cards.push("ICBC", [a, b, c])
    assert batch.result == OK
    assert batch.events[0][1] | {"msg_id": ""} == {
        "kind": "received",
        "bank": "ICBC",
        "msg_id": "",
        "new": 1,
        "duplicates": 2,
        "conflicts": 0,
    }
    assert [r["spend_id"] for r in cards.records()] == [a.spend_id, b.spend_id, c.spend_id]
    assert cards.record(a)["msg_id"] != cards.record(c)["msg_id"]  # each keeps the report that brought it


def test_the_same_spend_id_at_two_banks_is_two_records(cards: Cards) -> None:
    """SpendId is unique per bank (PROTOCOL.md §5.4), not across banks."""
    record = cards.spend(spend_id="SAME0001")
    cards.push("ICBC", [record])
    cards.push("CCB", [record])
    assert [(r["bank_code"], r["spend_id"]) for r in cards.records()] == [("ICBC", "SAME0001"), ("CCB", "SAME0001")]


def test_the_same_msg_id_twice_gets_the_same_answer_and_changes_nothing(cards: Cards) -> None:
    """A resent 7101 (same MsgId, same content) is answered as before; other content under it is 91005."""
    a = cards.spend()
    first = cards.push("ICBC", [a], msg_id="ICBC0000000000000042")
    again = cards.push("ICBC", [a], msg_id="ICBC0000000000000042")
    other = cards.push("ICBC", [cards.spend()], msg_id="ICBC0000000000000042")
    assert (first.result, again.result, other.result) == (OK, OK, int(ResultCode.MSGID_REUSED))
    assert again.events == []  # nothing was applied the second time
    assert len(cards.records()) == 1
    events = cards.tx(lambda conn: conn.execute(select(card_events)).all())
    assert len(events) == 1


def test_a_repeat_with_other_content_keeps_the_first_and_is_raised(cards: Cards) -> None:
    """The same SpendId with another amount: the first report stands, the report is acknowledged, an alert says so."""
    a = cards.spend(amount_fen=10_000)
    cards.push("ICBC", [a])
    outcome = cards.push("ICBC", [replace(a, amt_fen=99_999)])
    assert outcome.result == OK
    assert cards.record(a)["amount_fen"] == 10_000
    alerts = [data for kind, data in outcome.events if kind == "alert"]
    assert len(alerts) == 1 and a.spend_id in alerts[0]["reason"]


# --- review ----------------------------------------------------------------------------------------------------


def test_approval_holds_quota_and_rejection_keeps_the_reason(cards: Cards) -> None:
    """Approved records hold the agency's quota; a rejected one holds none and keeps why."""
    cards.grant(HEALTH, 1_000_000)
    a, b = cards.spend(amount_fen=30_000), cards.spend(amount_fen=20_000)
    cards.push("ICBC", [a, b])
    assert cards.approve(HEALTH, [a]) == [Ref("ICBC", a.spend_id)]
    cards.reject(HEALTH, [b], "个人消费，由持卡人自行还款")
    assert (cards.record(a)["state"], cards.record(a)["quota_held_fen"]) == ("APPROVED", 30_000)
    assert (cards.record(b)["state"], cards.record(b)["reason"]) == ("REJECTED", "个人消费，由持卡人自行还款")
    assert cards.record(a)["reviewed_by"] == "api:test"
    assert cards.used_fen(HEALTH) == 30_000


def test_only_the_agencys_own_records(cards: Cards) -> None:
    """Another agency's record is refused, and with it the whole request: nothing is approved."""
    cards.grant(HEALTH, 1_000_000)
    mine, theirs = cards.spend(agency=HEALTH), cards.spend(agency=EDUCATION)
    cards.push("ICBC", [mine, theirs])
    with pytest.raises(ValidationError) as info:
        cards.approve(HEALTH, [mine, theirs])
    assert [p.field for p in info.value.problems] == [f"ICBC:{theirs.spend_id}"]
    assert "not a spending record of agency 102003" in info.value.problems[0].message
    assert cards.record(mine)["state"] == "RECEIVED" and cards.used_fen(HEALTH) == 0
    with pytest.raises(ValidationError):
        cards.reject(HEALTH, [theirs], "个人消费")
    assert cards.record(theirs)["state"] == "RECEIVED"


def test_never_a_record_twice(cards: Cards) -> None:
    """An approved or rejected record cannot be reviewed again, nor named twice in one request."""
    cards.grant(HEALTH, 1_000_000)
    a, b = cards.spend(), cards.spend()
    cards.push("ICBC", [a, b])
    cards.approve(HEALTH, [a])
    cards.reject(HEALTH, [b], "个人消费")
    steps: list[Callable[[], object]] = [
        lambda: cards.approve(HEALTH, [a]),
        lambda: cards.reject(HEALTH, [a], "改变主意"),
        lambda: cards.approve(HEALTH, [b]),
    ]
    for step in steps:
        with pytest.raises(ValidationError) as info:
            step()
        assert "already reviewed" in info.value.problems[0].message
    c = cards.spend()
    cards.push("ICBC", [c])
    with pytest.raises(ValidationError) as info:
        cards.approve(HEALTH, [c, c])
    assert info.value.problems[0].message == "named twice"
    assert cards.used_fen(HEALTH) == a.amt_fen


def test_never_beyond_the_agencys_quota(cards: Cards) -> None:
    """Approvals stop at the quota: the one that would exceed it is refused as a whole, nothing held for it."""
    cards.grant(HEALTH, 100_000)
    a, b, c = cards.spend(amount_fen=60_000), cards.spend(amount_fen=30_000), cards.spend(amount_fen=20_000)
    cards.push("ICBC", [a, b, c])
    cards.approve(HEALTH, [a])
    with pytest.raises(ValidationError) as info:
        cards.approve(HEALTH, [b, c])
    assert info.value.problems[0].field == "quota" and "40000 fen left" in info.value.problems[0].message
    assert cards.record(b)["state"] == cards.record(c)["state"] == "RECEIVED"
    cards.approve(HEALTH, [b])
    assert cards.used_fen(HEALTH) == 90_000


def test_unknown_records_and_empty_reasons_are_refused(cards: Cards) -> None:
    cards.grant(HEALTH, 100_000)
    with pytest.raises(ValidationError, match="no such spending record"):
        cards.approve(HEALTH, [Ref("ICBC", "NOPE")])
    a = cards.spend()
    cards.push("ICBC", [a])
    with pytest.raises(ValidationError, match="reason"):
        cards.reject(HEALTH, [a], "  ")
    with pytest.raises(ValueError, match="BANK:SPENDID"):
        Ref.parse("no-colon")


# --- repayment out -----------------------------------------------------------------------------------------------


def test_repayment_groups_per_agency_and_card(cards: Cards) -> None:
    """Approved records become one 8202 (BusinessTypeCode 2) per agency and card, each detail naming its record."""
    cards.grant(HEALTH, 10_000_000)
    cards.grant(EDUCATION, 10_000_000)
    h1a, h1b = cards.spend(card=1, amount_fen=10_000), cards.spend(card=1, amount_fen=20_000)
    h2 = cards.spend(card=2, amount_fen=5_000)
    e3 = cards.spend(agency=EDUCATION, card=3, amount_fen=7_000)
    left = cards.spend(card=1, amount_fen=1_000)  # not approved: stays out
    cards.push("ICBC", [h1a, h2, e3, h1b, left])
    cards.approve(HEALTH, [h1a, h1b, h2])
    cards.approve(EDUCATION, [e3])
    result = cards.repay()
    assert result.skipped == []
    made = {(v.agency, v.card): v for v in result.vouchers}
    one, two, three = "628288*********0001", "628288*********0002", "628288*********0003"
    assert set(made) == {(HEALTH, one), (HEALTH, two), (EDUCATION, three)}
    v1 = cards.voucher(made[(HEALTH, one)].key)
    assert (v1.vt_code, v1.business_type_code, v1.pay_type_code) == ("8202", "2", "12")
    assert (v1.agency_code, v1.agency_name) == (HEALTH, "南宁市卫生健康委员会")
    assert (v1.pay_acct_no, v1.pay_acct_name) == (zero_balance(HEALTH, "ICBC"), "南宁市卫生健康委员会零余额账户")
    assert (v1.payee_acct_no, v1.payee_acct_name, v1.pay_amt_fen) == (card_number(1), "李明", 30_000)
    assert [(d.id, d.spend_id, d.card_no, d.pay_amt_fen) for d in v1.details] == [
        ("1", h1a.spend_id, card_number(1), 10_000),
        ("2", h1b.spend_id, card_number(1), 20_000),
    ]
    for record, detail in ((h1a, "1"), (h1b, "2"), (h2, "1"), (e3, "1")):
        assert (cards.record(record)["state"], cards.record(record)["detail_id"]) == ("REPAYING", detail)
        assert cards.record(record)["quota_held_fen"] == 0
    assert cards.record(left)["state"] == "RECEIVED"
    # the held quota became the vouchers' quota: nothing more, nothing less
    assert cards.used_fen(HEALTH) == 35_000 and cards.used_fen(EDUCATION) == 7_000
    queued = cards.tx(lambda conn: conn.execute(select(outbox.c.msg_no, outbox.c.bank_code)).all())
    assert sorted(queued) == [("5106", "ICBC"), ("5106", "ICBC"), ("8202", "ICBC"), ("8202", "ICBC"), ("8202", "ICBC")]
    assert cards.repay().vouchers == []  # nothing approved is left


def test_repayment_vouchers_carry_at_most_max_details(cards: Cards) -> None:
    cards.max_details = 2
    cards.grant(HEALTH, 1_000_000)
    records = [cards.spend(card=1, amount_fen=1_000 + n) for n in range(5)]
    cards.push("ICBC", records)
    cards.approve(HEALTH, records)
    result = cards.repay()
    assert [v.records for v in result.vouchers] == [2, 2, 1]
    assert sum(v.amount_fen for v in result.vouchers) == sum(r.amt_fen for r in records)


def test_repay_filters_by_agency_and_bank(cards: Cards) -> None:
    cards.grant(HEALTH, 1_000_000)
    cards.grant(HEALTH, 1_000_000, bank="CCB")
    cards.grant(EDUCATION, 1_000_000)
    h, e, c = cards.spend(), cards.spend(agency=EDUCATION, card=2), cards.spend("CCB", card=3)
    cards.push("ICBC", [h, e])
    cards.push("CCB", [c])
    cards.approve(HEALTH, [h])
    cards.approve(EDUCATION, [e])
    cards.approve(HEALTH, [Ref("CCB", c.spend_id)])
    assert [v.agency for v in cards.repay(agency=EDUCATION).vouchers] == [EDUCATION]
    only_ccb = cards.repay(bank="CCB").vouchers
    assert [(v.bank, v.agency) for v in only_ccb] == [("CCB", HEALTH)]
    assert cards.voucher(only_ccb[0].key).pay_acct_no == zero_balance(HEALTH, "CCB")
    assert cards.record(h)["state"] == "APPROVED"


def test_a_group_that_cannot_be_repaid_is_skipped_and_the_rest_go(cards: Cards) -> None:
    """No 5106 for an agency: its records stay APPROVED with the reason reported, other agencies are repaid."""
    from gateway.store import repo

    cards.grant(HEALTH, 1_000_000)
    cards.tx(repo.grant_quota, ADM, cards.today.year, EDUCATION, 1_000_000, cards.now)  # quota, but no notice
    h, e = cards.spend(), cards.spend(agency=EDUCATION, card=2)
    cards.push("ICBC", [h, e])
    cards.approve(HEALTH, [h])
    cards.approve(EDUCATION, [e])
    result = cards.repay()
    assert [v.agency for v in result.vouchers] == [HEALTH]
    assert [(s.agency, s.refs) for s in result.skipped] == [(EDUCATION, (f"ICBC:{e.spend_id}",))]
    assert "zero-balance account" in result.skipped[0].reason
    assert cards.record(e)["state"] == "APPROVED" and cards.record(e)["quota_held_fen"] == e.amt_fen


def test_a_card_number_that_cannot_be_read_back_is_not_repaid(cards: Cards) -> None:
    """The number comes from the archived 7101; if that cannot be read (a rotated certificate), the group waits."""
    cards.grant(HEALTH, 1_000_000)
    a = cards.spend()
    cards.push("ICBC", [a])
    cards.approve(HEALTH, [a])

    def broken(bank: str, raw: bytes) -> object:
        raise ValueError("signature does not verify")

    result = replace(cards, reader=broken).repay()  # type: ignore[arg-type]
    assert result.vouchers == [] and "cannot be read back" in result.skipped[0].reason
    assert cards.record(a)["state"] == "APPROVED" and cards.used_fen(HEALTH) == a.amt_fen


# --- result in ---------------------------------------------------------------------------------------------------


def _approved_and_repaid(cards: Cards, amounts: list[int], card: int = 1) -> tuple[list[SpendRecord], str]:
    cards.grant(HEALTH, 10_000_000)
    records = [cards.spend(card=card, amount_fen=a) for a in amounts]
    cards.push("ICBC", records)
    cards.approve(HEALTH, records)
    (made,) = cards.repay().vouchers
    cards.dispatch()
    return records, str(made.key)


def test_partial_failure_returns_failed_records_to_approved_with_the_reason(cards: Cards) -> None:
    """Receipt with detail 2 failed: record 1 REPAID, record 2 approved-not-repaid with the bank's reason, its
    quota restored; the next repayment takes record 2 again, in a new voucher."""
    (r1, r2, r3), key = _approved_and_repaid(cards, [86_000, 42_800, 1_000])
    outcome = cards.send("ICBC", cards.receipt(key, {"2": "卡片已销户"}))
    assert outcome.result == OK
    assert cards.voucher_state(key) == "PAID"
    assert [cards.record(r)["state"] for r in (r1, r2, r3)] == ["REPAID", "APPROVED", "REPAID"]
    assert cards.record(r2)["reason"] == "卡片已销户" and cards.record(r2)["repay_failures"] == 1
    assert cards.record(r2)["quota_held_fen"] == 0
    assert cards.used_fen(HEALTH) == 87_000  # what was repaid; the failed 42,800 fen came back
    settled = [data for kind, data in outcome.events if kind == "cards"]
    assert settled == [
        {
            "kind": "settled",
            "key": key,
            "bank": "ICBC",
            "agency": HEALTH,
            "repaid": 2,
            "repaid_fen": 87_000,
            "failed": 1,
            "failed_fen": 42_800,
        }
    ]
    again = cards.repay()
    cards.dispatch()
    assert [(v.records, v.amount_fen) for v in again.vouchers] == [(1, 42_800)]
    assert str(again.vouchers[0].key) != key
    assert cards.record(r2)["state"] == "REPAYING" and cards.record(r2)["repay_attempts"] == 2
    assert cards.used_fen(HEALTH) == 87_000 + 42_800
    cards.send("ICBC", cards.receipt(again.vouchers[0].key))
    assert cards.record(r2)["state"] == "REPAID" and cards.used_fen(HEALTH) == 129_800


def test_a_repeated_receipt_changes_nothing(cards: Cards) -> None:
    _, key = _approved_and_repaid(cards, [1_000, 2_000])
    receipt = cards.receipt(key, {"1": "卡片已冻结"})
    cards.send("ICBC", receipt)
    before = (cards.records(), cards.used_fen(HEALTH))
    repeat = cards.send("ICBC", receipt)  # a new MsgId: the bank answered twice
    assert repeat.result == OK and repeat.events == []
    assert (cards.records(), cards.used_fen(HEALTH)) == before


def test_a_refused_repayment_returns_every_record(cards: Cards) -> None:
    (r1, r2), key = _approved_and_repaid(cards, [1_000, 2_000])
    cards.send("ICBC", cards.receipt(key, refuse="付款账户已冻结"))
    assert cards.voucher_state(key) == "FAILED"
    assert [(cards.record(r)["state"], cards.record(r)["reason"]) for r in (r1, r2)] == [
        ("APPROVED", "付款账户已冻结"),
        ("APPROVED", "付款账户已冻结"),
    ]
    assert cards.used_fen(HEALTH) == 0


def test_a_receipt_that_does_not_add_up_is_refused_and_changes_nothing(cards: Cards) -> None:
    """XPayAmt must be the sum of the paid details; otherwise 91006 and the voucher stays as it was."""
    (r1, r2), key = _approved_and_repaid(cards, [1_000, 2_000])
    wrong = replace(cards.receipt(key, {"2": "卡片已销户"}), x_pay_amt_fen=2_000)
    outcome = cards.send("ICBC", wrong)
    assert outcome.result == REFUSED and "XPayAmt" in outcome.add_word
    assert cards.voucher_state(key) == "SENT"
    assert [cards.record(r)["state"] for r in (r1, r2)] == ["REPAYING", "REPAYING"]
    assert cards.used_fen(HEALTH) == 3_000


def test_a_receipt_without_details_settles_every_record_alike(cards: Cards) -> None:
    (r1, r2), key = _approved_and_repaid(cards, [1_000, 2_000])
    cards.send("ICBC", cards.receipt(key, with_details=False))
    assert [cards.record(r)["state"] for r in (r1, r2)] == ["REPAID", "REPAID"]


def test_a_voucher_refused_by_the_banks_9120_brings_its_records_back(cards: Cards) -> None:
    """No receipt will come for a voucher the bank refused: the sweep returns its records, quota restored."""
    cards.grant(HEALTH, 1_000_000)
    record = cards.spend(amount_fen=5_000)
    cards.push("ICBC", [record])
    cards.approve(HEALTH, [record])
    (made,) = cards.repay().vouchers
    msg_id = cards.dispatch()[-1]  # after the 5106
    cards.nak("ICBC", msg_id, REFUSED, "付款账户已冻结")
    assert cards.voucher_state(made.key) == "REJECTED"
    events = cards.tx(service.settle_stranded, cards.now)
    assert [data["failed"] for kind, data in events if kind == "cards"] == [1]
    assert (cards.record(record)["state"], cards.record(record)["reason"]) == ("APPROVED", "付款账户已冻结")
    assert cards.used_fen(HEALTH) == 0
    assert cards.tx(service.settle_stranded, cards.now) == []  # once


def test_a_voucher_cancelled_before_sending_brings_its_records_back(cards: Cards) -> None:
    from gateway.payments import service as payments

    cards.grant(HEALTH, 1_000_000)
    record = cards.spend(amount_fen=5_000)
    cards.push("ICBC", [record])
    cards.approve(HEALTH, [record])
    (made,) = cards.repay().vouchers
    assert str(cards.tx(payments.cancel, made.key, "api:test", "wrong card", cards.now)) == "CANCELLED"
    cards.tx(service.settle_stranded, cards.now)
    assert cards.record(record)["state"] == "APPROVED" and "cancelled" in cards.record(record)["reason"]
    assert cards.used_fen(HEALTH) == 0


def test_a_status_reply_paid_in_part_restores_quota_and_the_receipt_settles_the_details(cards: Cards) -> None:
    """In doubt, the bank's 9102 says paid in part: the unpaid quota comes back at once; the receipt that follows
    (a repeat that agrees) moves the records."""
    from gateway.payments import service as payments

    (r1, r2), key = _approved_and_repaid(cards, [1_000, 2_000])
    cards.tx(payments.tick, cards.later(hours=1).now, PaymentSettings(receipt_deadline_s=60), NODE)  # no receipt
    assert cards.voucher_state(key) == "IN_DOUBT"
    cards.tx(payments.apply_status, "ICBC", cards.status(key, 2, paid_fen=1_000), "ICBC-STATUS-1", cards.now)
    assert cards.voucher_state(key) == "PAID" and cards.used_fen(HEALTH) == 1_000
    assert cards.tx(service.settle_stranded, cards.now) == []  # paid in part: wait for the receipt
    cards.send("ICBC", cards.receipt(key, {"2": "卡片已冻结"}))
    assert [cards.record(r)["state"] for r in (r1, r2)] == ["REPAID", "APPROVED"]
    assert cards.used_fen(HEALTH) == 1_000


def test_a_status_reply_paid_in_full_repays_every_record(cards: Cards) -> None:
    from gateway.payments import service as payments

    (r1, r2), key = _approved_and_repaid(cards, [1_000, 2_000])
    cards.tx(payments.tick, cards.later(hours=1).now, PaymentSettings(receipt_deadline_s=60), NODE)
    cards.tx(payments.apply_status, "ICBC", cards.status(key, 2, paid_fen=3_000), "ICBC-STATUS-1", cards.now)
    cards.tx(service.settle_stranded, cards.now)
    assert [cards.record(r)["state"] for r in (r1, r2)] == ["REPAID", "REPAID"]


def test_the_full_cycle_leaves_a_complete_event_log(cards: Cards) -> None:
    (_, r2), key = _approved_and_repaid(cards, [1_000, 2_000])
    cards.send("ICBC", cards.receipt(key, {"2": "卡片已销户"}))
    found = cards.tx(queries.get_spending, "ICBC", r2.spend_id, cards.today)
    assert found is not None
    assert [(e["event"], e["to"]) for e in found["events"]] == [
        ("received", "RECEIVED"),
        ("approve", "APPROVED"),
        ("repay", "REPAYING"),
        ("repay_failed", "APPROVED"),
    ]
    assert found["events"][-1]["detail"] == {"voucher": key, "detail": "2", "reason": "卡片已销户"}
    assert found["voucher"] == key and found["card"] == "628288*********0001"


def test_spending_the_gateway_does_not_know_of_cannot_be_repaid_through_a_foreign_voucher(cards: Cards) -> None:
    """A card repayment submitted by the finance side directly (not from records) settles as a voucher only."""
    from gateway.payments import service as payments
    from protocols import samples

    cards.grant(HEALTH, 10_000_000)
    voucher: Voucher = samples.card_repayment()
    cards.tx(payments.submit, [("ICBC", voucher)], "api:test", cards.now, NODE, ["ICBC"])
    cards.dispatch()
    outcome = cards.send("ICBC", samples.card_receipt())
    assert outcome.result == OK and [kind for kind, _ in outcome.events] == ["voucher"]
    assert cards.records() == []


def test_the_card_hash_key_is_made_once(cards: Cards) -> None:
    first = cards.tx(service.hash_key)
    assert cards.tx(service.hash_key) == first and len(first) == 32


def test_a_7101_the_payment_service_routes_is_applied_not_refused(cards: Cards) -> None:
    """The hook: before issue 5 a 7101 was refused 'not handled by this gateway yet'."""
    outcome = cards.push("ICBC", [cards.spend()])
    assert outcome.result == OK, outcome.add_word
    assert isinstance(cards.inbound("ICBC", CardSpending(records=(cards.spend(),))).message.body, CardSpending)
