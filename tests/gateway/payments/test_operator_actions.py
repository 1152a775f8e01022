"""Operator actions on vouchers: resolving one in doubt (paid, failed, not received) and resending, on both backends."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from gateway.config import PaymentSettings
from gateway.payments import operator_actions, service
from gateway.payments.machine import Event, State
from gateway.store import repo
from gateway.store.db import transaction
from gateway.store.tables import outbox
from protocols import samples
from protocols.messages import StatusReply, VoucherKey

T0 = datetime(2026, 11, 23, 2, 0, 0)
NODE = "450100000000"
SETTINGS = PaymentSettings()


def _submit(engine: Engine, no: str = "OA1") -> VoucherKey:
    voucher = dataclasses.replace(samples.direct_voucher(), voucher_no=no)
    with transaction(engine) as conn:
        [done] = service.submit(conn, [("ICBC", voucher)], "finance:test", T0, NODE, ["ICBC"])
    return done.key


def _send(engine: Engine, at: datetime = T0) -> None:
    with transaction(engine) as conn:
        items = service.claim_outbox(conn, "ICBC", at, 10, "node", False)
        service.mark_sent(conn, "ICBC", {i.id: b"<signed/>" for i in items}, at, SETTINGS)


def _in_doubt(engine: Engine, no: str = "OA1") -> VoucherKey:
    key = _submit(engine, no)
    _send(engine)
    with transaction(engine) as conn:
        service.tick(conn, T0 + timedelta(seconds=SETTINGS.receipt_deadline_s + 1), SETTINGS, NODE)
    return key


def _state(engine: Engine, key: VoucherKey) -> tuple[str, list[tuple[str, str]]]:
    with transaction(engine) as conn:
        rec = repo.get_voucher_by_key(conn, key)
        assert rec is not None
        hist = [(h.event, h.actor) for h in repo.history(conn, rec.id)]
        assert repo.verify_chain(conn, rec.id)
        return rec.state, hist


def _outbox(engine: Engine) -> list[tuple[str, str, datetime]]:
    with transaction(engine) as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).mappings().all()
        return [(r["msg_no"], r["state"], r["next_attempt_at"]) for r in rows]


def test_resolve_paid_records_the_bank_serial_and_withdraws_the_query(db_engine: Engine) -> None:
    key = _in_doubt(db_engine)
    assert _state(db_engine, key)[0] == "IN_DOUBT"
    assert ("9101", "PENDING") in [(m, s) for m, s, _ in _outbox(db_engine)]
    with transaction(db_engine) as conn:
        result = operator_actions.resolve_in_doubt(
            conn,
            key,
            "paid",
            "operator:carol",
            T0 + timedelta(hours=1),
            evidence="工行电话确认已支付 ICBC confirmed by phone",
            x_agent_business_no="ICBC0001",
            x_pay_date=date(2026, 11, 23),
        )
    assert result.state is State.PAID and result.events[0][1]["state"] == "PAID"
    state, hist = _state(db_engine, key)
    assert state == "PAID" and hist[-1] == ("operator_paid", "operator:carol")
    assert ("9101", "NACKED") in [(m, s) for m, s, _ in _outbox(db_engine)]
    with transaction(db_engine) as conn:
        rec = repo.get_voucher_by_key(conn, key)
        assert rec is not None and rec.x_agent_business_no == "ICBC0001" and rec.x_pay_amt_fen == rec.amount_fen


def test_resolve_failed_and_not_received(db_engine: Engine) -> None:
    a, b = _in_doubt(db_engine, "OA1"), _in_doubt(db_engine, "OA2")
    with transaction(db_engine) as conn:
        assert (
            operator_actions.resolve_in_doubt(conn, a, "failed", "operator:c", T0, evidence="bank: refused").state
            is State.FAILED
        )
        result = operator_actions.resolve_in_doubt(
            conn, b, "not_received", "operator:c", T0, evidence="bank: never got it"
        )
    assert result.state is State.ACCEPTED
    assert _state(db_engine, a)[1][-1] == ("operator_failed", "operator:c")
    assert _state(db_engine, b)[1][-1] == ("operator_not_received", "operator:c")
    # the voucher's own message is queued again, with the same MsgId
    with transaction(db_engine) as conn:
        rec = repo.get_voucher_by_key(conn, b)
        assert rec is not None
        row = (
            conn.execute(select(outbox).where(outbox.c.voucher_id == rec.id, outbox.c.msg_no == "5201"))
            .mappings()
            .one()
        )
        assert row["state"] == "PENDING" and row["msg_id"] == rec.msg_id


def _last(engine: Engine, key: VoucherKey) -> repo.HistoryEntry:
    with transaction(engine) as conn:
        rec = repo.get_voucher_by_key(conn, key)
        assert rec is not None
        return repo.history(conn, rec.id)[-1]


def test_the_history_says_an_operator_decided_not_the_bank(db_engine: Engine) -> None:
    """The resolution's history entry is an operator event, never the bank's receipt or status event; it names
    the operator, the evidence, and the bank's last 9102 answer; and the chain still proves itself."""
    bank_events = {Event.PAID.value, Event.FAILED.value, Event.STATUS_NOT_RECEIVED.value}
    seen = {}
    for n, (resolution, extra) in enumerate(
        [
            ("paid", {"x_agent_business_no": "ICBC0009", "x_pay_date": date(2026, 11, 23)}),
            ("failed", {}),
            ("not_received", {}),
        ]
    ):
        key = _in_doubt(db_engine, f"OH{n}")
        # the bank answered the status query "received, still processing" (9102 XStatus 1)
        with transaction(db_engine) as conn:
            service.apply_status(
                conn,
                "ICBC",
                StatusReply(
                    adm_div_code=key.adm_div_code,
                    st_year=key.st_year,
                    vt_code=key.vt_code,
                    voucher_no=key.voucher_no,
                    x_status=1,
                    x_add_word="处理中",
                ),
                f"B9102{n}",
                T0 + timedelta(minutes=30),
            )
        with transaction(db_engine) as conn:
            operator_actions.resolve_in_doubt(
                conn, key, resolution, "operator:dora", T0 + timedelta(hours=1), evidence="柜台回函 letter 42", **extra
            )
        entry = _last(db_engine, key)
        seen[resolution] = entry.event
        assert entry.actor == "operator:dora" and entry.event not in bank_events
        assert entry.from_state == "IN_DOUBT"
        detail = json.loads(entry.detail)
        assert detail["evidence"] == "柜台回函 letter 42" and detail["by"] == "operator"
        assert detail["bank_status"]["x_status"] == 1 and detail["bank_status"]["x_add_word"] == "处理中"
        assert detail["bank_status"]["msg_id"] == f"B9102{n}"
        assert _state(db_engine, key)[0] == entry.to_state  # _state also checks the hash chain
    assert seen == {"paid": "operator_paid", "failed": "operator_failed", "not_received": "operator_not_received"}


def test_without_a_bank_answer_the_history_says_so(db_engine: Engine) -> None:
    key = _in_doubt(db_engine)
    with transaction(db_engine) as conn:
        operator_actions.resolve_in_doubt(conn, key, "failed", "operator:c", T0, evidence="bank: refused")
    assert json.loads(_last(db_engine, key).detail)["bank_status"] is None


@pytest.mark.parametrize(
    ("resolution", "evidence", "extra", "match"),
    [
        ("maybe", "bank said so", {}, "unknown resolution"),
        ("paid", "", {}, "status"),
        ("paid", "bank said paid", {}, "serial"),
    ],
)
def test_resolution_needs_its_details(
    db_engine: Engine, resolution: str, evidence: str, extra: dict, match: str
) -> None:
    key = _in_doubt(db_engine)
    with transaction(db_engine) as conn, pytest.raises(service.Refused, match=match):
        operator_actions.resolve_in_doubt(conn, key, resolution, "operator:c", T0, evidence=evidence, **extra)
    assert _state(db_engine, key)[0] == "IN_DOUBT"


def test_only_vouchers_in_doubt_are_resolved(db_engine: Engine) -> None:
    key = _submit(db_engine)
    with transaction(db_engine) as conn, pytest.raises(service.Refused, match="not in doubt"):
        operator_actions.resolve_in_doubt(conn, key, "failed", "operator:c", T0, evidence="bank: refused")
    with transaction(db_engine) as conn, pytest.raises(service.Refused, match="unknown voucher"):
        operator_actions.resolve_in_doubt(
            conn, VoucherKey("450100", 2026, "5201", "NOPE"), "failed", "o", T0, evidence="bank: refused"
        )


def test_resend_makes_the_unacknowledged_message_due_now(db_engine: Engine) -> None:
    key = _submit(db_engine)
    _send(db_engine)
    [(_, state, due)] = _outbox(db_engine)
    assert state == "SENT" and due > T0
    later = T0 + timedelta(seconds=5)
    with transaction(db_engine) as conn:
        result = operator_actions.resend(conn, key, "operator:olga", later)
    assert result.state is State.SENT and result.bank == "ICBC"
    assert _outbox(db_engine) == [("5201", "SENT", later)]
    assert _state(db_engine, key)[1][-1] == ("resend_requested", "operator:olga")
    with transaction(db_engine) as conn:
        [item] = service.claim_outbox(conn, "ICBC", later, 10, "node", False)
        assert item.wire == b"<signed/>"  # the same bytes go again


def test_resend_refuses_in_doubt_and_settled_vouchers(db_engine: Engine) -> None:
    key = _in_doubt(db_engine)
    with transaction(db_engine) as conn, pytest.raises(service.Refused, match="in doubt"):
        operator_actions.resend(conn, key, "operator:o", T0)
    cancelled = _submit(db_engine, "OA3")
    with transaction(db_engine) as conn:
        service.cancel(conn, cancelled, "operator:o", "typo", T0)
    with transaction(db_engine) as conn, pytest.raises(service.Refused, match="CANCELLED"):
        operator_actions.resend(conn, cancelled, "operator:o", T0)
