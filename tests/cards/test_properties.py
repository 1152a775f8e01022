"""Hypothesis over the whole cycle on the store (SQLite and PostgreSQL): grouping and amounts.

Whatever the records (agencies, cards, amounts), the voucher size and which details the bank fails: each voucher
repays one agency's one card; every approved record is in exactly one voucher; the sum repaid is the sum of what
was approved and succeeded, equal to what the bank reported paid and to the quota in use; failed records are
approved, not repaid, hold no quota, and a second repayment brings everything home.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.store.tables import vouchers
from tests.cards.conftest import EDUCATION, HEALTH, Cards, wipe

spending = st.lists(
    st.tuples(st.sampled_from([HEALTH, EDUCATION]), st.integers(1, 4), st.integers(1, 2_000_000)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spending, st.integers(1, 6), st.data())
def test_the_sum_repaid_is_the_sum_approved_and_succeeded(
    cards: Cards, drawn: list[tuple[str, int, int]], max_details: int, data: st.DataObject
) -> None:
    wipe(cards.engine)
    cards.max_details = max_details
    for agency in (HEALTH, EDUCATION):
        cards.grant(agency, 100_000_000)
    records = [
        cards.spend(agency=agency, card=card + (10 if agency == EDUCATION else 0), amount_fen=amount)
        for agency, card, amount in drawn
    ]
    cards.push("ICBC", records)
    for agency in (HEALTH, EDUCATION):
        mine = [r for r in records if r.agency_code == agency]
        if mine:
            cards.approve(agency, mine)
    result = cards.repay()
    assert result.skipped == []
    cards.dispatch()

    placed: list[str] = []
    succeeded_fen = failed_fen = 0
    for made in result.vouchers:
        voucher = cards.voucher(made.key)
        assert len(voucher.details) <= max_details
        assert len({d.card_no for d in voucher.details}) == 1 and voucher.payee_acct_no == voucher.details[0].card_no
        assert {r.agency_code for r in records if r.spend_id in {d.spend_id for d in voucher.details}} == {
            voucher.agency_code
        }
        assert voucher.pay_amt_fen == sum(d.pay_amt_fen for d in voucher.details)
        placed += [d.spend_id for d in voucher.details if d.spend_id]
        failed = data.draw(st.sets(st.sampled_from([d.id for d in voucher.details])), label=f"failed in {made.key}")
        cards.send("ICBC", cards.receipt(made.key, dict.fromkeys(failed, "卡片已销户")))
        succeeded_fen += sum(d.pay_amt_fen for d in voucher.details if d.id not in failed)
        failed_fen += sum(d.pay_amt_fen for d in voucher.details if d.id in failed)
    assert sorted(placed) == sorted(r.spend_id for r in records)

    rows = cards.records()
    repaid_fen = sum(r["amount_fen"] for r in rows if r["state"] == "REPAID")
    paid_by_bank = cards.tx(lambda conn: conn.execute(select(vouchers.c.x_pay_amt_fen)).scalars().all())
    assert repaid_fen == succeeded_fen == sum(x or 0 for x in paid_by_bank)
    assert cards.used_fen(HEALTH) + cards.used_fen(EDUCATION) == repaid_fen
    back = [r for r in rows if r["state"] == "APPROVED"]
    assert sum(r["amount_fen"] for r in back) == failed_fen
    assert all(r["reason"] == "卡片已销户" and r["quota_held_fen"] == 0 and r["repay_failures"] == 1 for r in back)
    assert {r["state"] for r in rows} <= {"REPAID", "APPROVED"}

    again = cards.repay()
    cards.dispatch()
    for made in again.vouchers:
        cards.send("ICBC", cards.receipt(made.key))
    assert {r["state"] for r in cards.records()} == {"REPAID"}
    assert cards.used_fen(HEALTH) + cards.used_fen(EDUCATION) == sum(r.amt_fen for r in records)
