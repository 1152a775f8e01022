"""The dispatcher claims only when something may be due: an answer that merely frees room in the in-flight window
skips the store once the bank's last claim drained its outbox (docs/performance.md, "The store path")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from twisted.internet.task import Clock

from gateway.config import Config
from gateway.hub import Hub
from gateway.payments import service
from protocols import samples
from protocols.messages import Reply
from tests.gateway.conftest import (
    NODE,
    NOW,
    Link,
    connect,
    emptied,
    make_bank,
    make_hub,
    peer_certificate,
    voucher_state,
)


@pytest.fixture
def pg_db_engine(pg_engine: Engine) -> Engine:
    """The session's PostgreSQL database, emptied quickly for this module (see tests.gateway.conftest.emptied)."""
    return emptied(pg_engine)


def _submit(engine: Engine, *vouchers: Any) -> None:
    with engine.begin() as conn:
        service.submit(conn, [("ICBC", v) for v in vouchers], "test", NOW.replace(tzinfo=None), NODE, ["ICBC"])


def test_answers_skip_the_claim_once_drained_and_new_work_still_goes(
    link: Link, hub: Hub, db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims: list[int] = []
    real_claim = service.claim_outbox

    def counting_claim(*args: Any) -> list[service.OutboxItem]:
        items = real_claim(*args)
        claims.append(len(items))
        return items

    monkeypatch.setattr(service, "claim_outbox", counting_claim)
    first, second = samples.direct_voucher(), samples.direct_voucher("5201450100000124")
    _submit(db_engine, first)
    link.sign_on()
    sent = [m for m in link.received() if m.head.msg_no == "5201"]
    assert [m.body.voucher_no for m in sent] == [first.voucher_no]
    assert claims == [1]  # the sign-on's claim took less than the window: drained

    link.send(link.bank.frame(Reply(ori_msg_no="5201", result=90000, add_word=""), msg_ref=sent[0].head.msg_id))
    assert voucher_state(db_engine, first.key) == "DELIVERED"
    assert claims == [1]  # the ack only freed room: no claim

    _submit(db_engine, second)
    hub.kick("ICBC")  # a submission always kicks, drained or not
    assert [m.body.voucher_no for m in link.received() if m.head.msg_no == "5201"] == [second.voucher_no]
    assert claims == [1, 1]

    receipt_id = link.bank.next_msg_id()
    link.send(link.bank.frame(samples.receipt(), msg_id=receipt_id))
    assert [(m.head.msg_ref, m.body.result) for m in link.received()] == [(receipt_id, 90000)]
    assert voucher_state(db_engine, first.key) == "PAID"
    assert claims == [1, 1]  # the receipt settled a message: room only, no claim


def test_an_answer_claims_again_when_the_last_claim_filled_the_window(
    config: Config, db_engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = make_hub(config, db_engine, clock, max_in_flight=1)
    link = connect(hub, clock, make_bank(config, "ICBC"), peer_certificate(config, "ICBC"))
    claims: list[int] = []
    real_claim = service.claim_outbox

    def counting_claim(*args: Any) -> list[service.OutboxItem]:
        items = real_claim(*args)
        claims.append(len(items))
        return items

    monkeypatch.setattr(service, "claim_outbox", counting_claim)
    first, second = samples.direct_voucher(), samples.direct_voucher("5201450100000124")
    _submit(db_engine, first, second)
    link.sign_on()
    sent = [m for m in link.received() if m.head.msg_no == "5201"]
    assert [m.body.voucher_no for m in sent] == [first.voucher_no] and claims == [1]  # window full: not drained
    link.send(link.bank.frame(Reply(ori_msg_no="5201", result=90000, add_word=""), msg_ref=sent[0].head.msg_id))
    clock.advance(0)
    assert [m.body.voucher_no for m in link.received() if m.head.msg_no == "5201"] == [second.voucher_no]
    assert claims[-1] == 1 and len(claims) >= 2
