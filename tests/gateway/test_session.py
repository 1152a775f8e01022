"""Bank sessions and the hub: sign-on, probes, deadlines, framing, identity and the write-buffer cap.

Each test drives a :class:`~gateway.session.BankSession` over a fake TLS transport (a StringTransport that
presents the bank's client certificate), with the hub's store on the test database through the synchronous
:class:`~gateway.dbthread.InlineDatabase` and time on a :class:`~twisted.internet.task.Clock`. The write-buffer
cap and the certificate binding are also exercised over real in-memory TLS (Twisted's TLSMemoryBIOProtocol over
a file-descriptor transport that sends only what the test lets through), because the cap reads those layers'
buffers.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from twisted.internet import ssl
from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from banks.standard import STANDARD_DIALECT
from certs.pki import load_certificate
from certs.store import PkiDirectory
from gateway.app import BankTlsContext
from gateway.config import Config
from gateway.dbthread import InlineDatabase
from gateway.hub import Hub
from gateway.payments import service
from gateway.session import BankSession, BankSessionFactory
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import archive, inbound
from protocols import samples
from protocols.messages import Ping, Reply, SignOff, SignOffReply, SignOn, SignOnReply
from protocols.signature import Verifier
from tests.gateway.conftest import (
    NODE,
    NOW,
    Bank,
    Link,
    all_chains_verify,
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


SIGN_ON = SignOn(bank_code="ICBC", last_work_date=date(2026, 11, 20))


def archived(engine: Engine, **where: Any) -> list[Any]:
    with transaction(engine, read_only=True) as conn:
        query = select(archive).order_by(archive.c.id)
        for name, value in where.items():
            query = query.where(archive.c[name] == value)
        return list(conn.execute(query).mappings())


def count_inbound(engine: Engine) -> int:
    with transaction(engine, read_only=True) as conn:
        return int(conn.execute(select(func.count()).select_from(inbound)).scalar_one())


def only(messages: list[Any]) -> Any:
    assert len(messages) == 1, messages
    return messages[0]


# --- sign-on ------------------------------------------------------------------------------------------------------


def test_sign_on_is_answered_9007_with_the_gateways_work_date(
    hub: Hub, clock: Clock, config: Config, icbc: Bank
) -> None:
    """9006 → 9007 carrying 90000, the sign-on's MsgId in MsgRef and the gateway's own work date."""
    clock.advance(15 * 3600)  # 17:30 UTC is 01:30 the next day in Shanghai: the work date follows the instance
    link = connect(hub, clock, icbc, peer_certificate(config, "ICBC"))
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(SIGN_ON, msg_id=msg_id))
    reply = only(link.received())
    assert reply.head.msg_no == "9007" and reply.head.msg_ref == msg_id
    assert (reply.head.src, reply.head.des) == (NODE, "ICBC")
    assert isinstance(reply.body, SignOnReply)
    assert reply.body.result == 90000
    assert reply.body.work_date == date(2026, 11, 24) == hub.work_date()
    assert link.session.signed_on and hub.live_sessions("ICBC") == [link.session]


def test_sign_on_cancels_the_sign_on_deadline(link: Link, hub: Hub, clock: Clock) -> None:
    """A session that signed on in time is not closed when the sign-on deadline passes."""
    link.sign_on()
    clock.advance(hub.config.session.sign_on_timeout_s + 1)
    assert not link.transport.disconnecting


def test_no_sign_on_within_the_deadline_closes(link: Link, hub: Hub, clock: Clock) -> None:
    """A bank that never signs on is closed at the sign-on deadline, not before."""
    limit = hub.config.session.sign_on_timeout_s
    clock.advance(limit - 0.01)
    assert not link.transport.disconnecting
    clock.advance(0.01)
    assert link.transport.disconnecting
    assert link.received() == []


def test_a_probe_before_sign_on_is_answered_90000(link: Link) -> None:
    """9005 is allowed before sign-on (PROTOCOL.md §4) and answered by a 9120 with 90000."""
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(Ping(), msg_id=msg_id))
    reply = only(link.received())
    assert isinstance(reply.body, Reply)
    assert (reply.body.ori_msg_no, reply.body.result, reply.head.msg_ref) == ("9005", 90000, msg_id)
    assert not link.session.signed_on and not link.transport.disconnecting


def test_anything_else_before_sign_on_is_refused_91006_and_not_processed(link: Link, db_engine: Engine) -> None:
    """A receipt before sign-on gets 91006; nothing is recorded as processed and the connection stays open."""
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(samples.receipt(), msg_id=msg_id))
    reply = only(link.received())
    assert isinstance(reply.body, Reply)
    assert (reply.body.ori_msg_no, reply.body.result, reply.head.msg_ref) == ("5201", 91006, msg_id)
    assert count_inbound(db_engine) == 0
    assert [row["result_code"] for row in archived(db_engine, direction="in")] == [91006]
    assert not link.transport.disconnecting
    assert link.sign_on().body.result == 90000  # it may still sign on afterwards


def test_sign_on_naming_another_bank_is_91004_and_closes(link: Link) -> None:
    """A sign-on whose BankCode is not the certificate's bank is an identity error: 91004, then close."""
    link.send(link.bank.frame(SignOn(bank_code="CCB", last_work_date=date(2026, 11, 20))))
    reply = only(link.received())
    assert isinstance(reply.body, Reply) and reply.body.result == 91004
    assert link.transport.disconnecting and not link.session.signed_on


def test_sign_off_is_answered_9009_and_stops_gateway_initiated_traffic(link: Link, hub: Hub) -> None:
    """After a 9008 the session gets its 9009 and is no longer a live session of the bank."""
    link.sign_on()
    link.send(link.bank.frame(SignOff(reason="日终签退")))
    reply = only(link.received())
    assert isinstance(reply.body, SignOffReply) and reply.body.result == 90000
    assert hub.live_sessions("ICBC") == []


# --- the idle probe -----------------------------------------------------------------------------------------------


def test_silence_for_the_idle_timeout_sends_a_probe(link: Link, hub: Hub, clock: Clock) -> None:
    """No traffic for idle_timeout_s: the gateway sends a 9005 (a Ping from its node to the bank), not earlier."""
    link.sign_on()
    clock.advance(hub.config.session.idle_timeout_s - 0.01)
    assert link.received() == []
    clock.advance(0.01)
    probe = only(link.received())
    assert probe.head.msg_no == "9005" and isinstance(probe.body, Ping)
    assert (probe.head.src, probe.head.des) == (NODE, "ICBC")


def test_no_probe_goes_to_a_link_that_has_not_signed_on(
    config: Config, db_engine: Engine, clock: Clock, icbc: Bank
) -> None:
    """Nothing but replies goes to a connection before sign-on (PROTOCOL.md §4), not even the idle probe: the
    sign-on deadline is its only timer, even when it is longer than the idle period."""
    hub = make_hub(config, db_engine, clock, sign_on_timeout_s=120.0)
    link = connect(hub, clock, icbc, peer_certificate(config, "ICBC"))
    clock.advance(hub.config.session.idle_timeout_s + hub.config.session.probe_timeout_s + 1)
    assert link.received() == [] and not link.transport.disconnecting
    clock.advance(120.0)
    assert link.transport.disconnecting and link.received() == []


def test_a_link_silent_after_signing_off_is_closed_not_probed(link: Link, hub: Hub, clock: Clock) -> None:
    """After a 9008 the connection may get nothing but replies: silent for the idle period, it is closed."""
    link.sign_on()
    link.send(link.bank.frame(SignOff(reason="日终签退")))
    assert only(link.received()).head.msg_no == "9009"
    clock.advance(hub.config.session.idle_timeout_s)
    assert link.received() == [] and link.transport.disconnecting


def test_an_unanswered_probe_aborts_the_connection(link: Link, hub: Hub, clock: Clock) -> None:
    """No answer within probe_timeout_s after the probe: the connection is cut (aborted), not before."""
    link.sign_on()
    limits = hub.config.session
    clock.advance(limits.idle_timeout_s)
    only(link.received())
    clock.advance(limits.probe_timeout_s - 0.01)
    assert not link.transport.aborted
    clock.advance(0.01)
    assert link.transport.aborted


def test_an_answered_probe_keeps_the_connection_and_probes_again_later(link: Link, hub: Hub, clock: Clock) -> None:
    """The bank's 9120 to the probe is traffic: no abort, and the next probe comes one idle period later."""
    link.sign_on()
    limits = hub.config.session
    clock.advance(limits.idle_timeout_s)
    probe = only(link.received())
    link.send(link.bank.frame(Reply(ori_msg_no="9005", result=90000, add_word=""), msg_ref=probe.head.msg_id))
    clock.advance(limits.probe_timeout_s + 1)
    assert not link.transport.aborted
    clock.advance(limits.idle_timeout_s - limits.probe_timeout_s - 1)
    assert only(link.received()).head.msg_no == "9005"


def test_answering_a_probe_raises_no_alert(link: Link, hub: Hub, clock: Clock) -> None:
    """The answer to an idle probe is routine: no 'alert' event for the operators."""
    events: list[tuple[str, dict[str, Any]]] = []
    hub.listeners.append(lambda kind, data: events.append((kind, data)))
    link.sign_on()
    clock.advance(hub.config.session.idle_timeout_s)
    probe = only(link.received())
    link.send(link.bank.frame(Reply(ori_msg_no="9005", result=90000, add_word=""), msg_ref=probe.head.msg_id))
    assert [e for e in events if e[0] == "alert"] == []


def test_traffic_resets_the_idle_timer(link: Link, hub: Hub, clock: Clock) -> None:
    """Anything received restarts the idle period: no probe until idle_timeout_s after the last traffic."""
    link.sign_on()
    idle = hub.config.session.idle_timeout_s
    clock.advance(idle - 1)
    link.send(link.bank.frame(Ping()))
    assert only(link.received()).head.msg_no == "9120"
    clock.advance(idle - 0.01)
    assert link.received() == []
    clock.advance(0.01)
    assert only(link.received()).head.msg_no == "9005"


def test_traffic_after_a_probe_cancels_the_probe_deadline(link: Link, hub: Hub, clock: Clock) -> None:
    """Any bytes from the bank after a probe prove it alive, even if they are not the probe's answer."""
    link.sign_on()
    limits = hub.config.session
    clock.advance(limits.idle_timeout_s)
    only(link.received())
    link.send(link.bank.frame(Ping()))
    clock.advance(limits.probe_timeout_s)
    assert not link.transport.aborted


def test_closing_cancels_every_timer(link: Link, clock: Clock) -> None:
    """connectionLost leaves no timer behind (nothing fires on a dead session)."""
    link.sign_on()
    assert clock.getDelayedCalls()
    link.session.connectionLost()
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


# --- framing ------------------------------------------------------------------------------------------------------


def test_a_bad_frame_header_is_answered_91001_then_closed(link: Link, db_engine: Engine) -> None:
    """A length field that is not 8 digits: a 9120 with 91001 and empty MsgRef/OriMsgNo, then loseConnection."""
    link.sign_on()
    link.send(b"00x00123<Message/>")
    reply = only(link.received())
    assert isinstance(reply.body, Reply)
    assert (reply.body.result, reply.body.ori_msg_no, reply.head.msg_ref) == (91001, "", "")
    assert link.transport.disconnecting and not link.transport.aborted
    assert [row["result_code"] for row in archived(db_engine, direction="in")][-1] == 91001


def test_after_a_framing_error_nothing_more_is_processed(link: Link) -> None:
    """Bytes that follow a framing error are ignored: no second reply, nothing processed."""
    link.sign_on()
    link.send(b"ABCDEFGH")
    assert only(link.received()).body.result == 91001
    link.send(link.bank.frame(Ping()))
    link.send(b"ZZZZZZZZ")
    assert link.received() == []


def test_an_oversized_frame_is_refused_before_its_body(link: Link) -> None:
    """A header announcing more than the 4 MiB maximum is a framing error at once (no body is awaited)."""
    link.sign_on()
    link.send(b"99999999")
    assert only(link.received()).body.result == 91001
    assert link.transport.disconnecting


def test_the_configured_frame_maximum_is_enforced(config: Config, db_engine: Engine, clock: Clock) -> None:
    """[session] max_frame_bytes caps a frame: a header announcing more is a framing error (91001, close)."""
    hub = make_hub(config, db_engine, clock, max_frame_bytes=8192)  # a signed 9006 is some 2 kB
    link = connect(hub, clock, make_bank(config, "ICBC"), peer_certificate(config, "ICBC"))
    link.sign_on()
    link.send(b"00008193")
    assert [m.body.result for m in link.received()] == [91001]
    assert link.transport.disconnecting


def test_frames_split_byte_by_byte_are_processed_in_order(link: Link) -> None:
    """Chunking does not matter: a sign-on, a probe and a receipt fed one byte at a time give three replies,
    in order."""
    ids = [link.bank.next_msg_id() for _ in range(3)]
    data = (
        link.bank.frame(SIGN_ON, msg_id=ids[0])
        + link.bank.frame(Ping(), msg_id=ids[1])
        + link.bank.frame(samples.receipt(), msg_id=ids[2])
    )
    for n in range(len(data)):
        link.send(data[n : n + 1])
    replies = link.received()
    assert [(m.head.msg_no, m.head.msg_ref) for m in replies] == [("9007", ids[0]), ("9120", ids[1]), ("9120", ids[2])]
    assert [m.body.result for m in replies] == [90000, 90000, 91006]  # the receipt names no known voucher


def test_several_frames_in_one_chunk_are_processed_in_order(link: Link) -> None:
    """Three frames in a single chunk: three replies, in the order of the frames."""
    ids = [link.bank.next_msg_id() for _ in range(3)]
    link.send(b"".join(link.bank.frame(p, msg_id=i) for p, i in zip((SIGN_ON, Ping(), Ping()), ids, strict=True)))
    assert [m.head.msg_ref for m in link.received()] == ids


def test_frames_before_a_framing_error_in_the_same_chunk_are_processed(link: Link) -> None:
    """A good frame followed by a bad header in one chunk: the good frame is answered, then the 91001."""
    link.sign_on()
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(Ping(), msg_id=msg_id) + b"NOTDIGIT")
    assert [(m.head.msg_ref, m.body.result) for m in link.received()] == [(msg_id, 90000), ("", 91001)]


def test_frames_before_a_framing_error_in_an_earlier_chunk_are_processed(link: Link) -> None:
    """The same bytes in two chunks: the good frame is answered, then the 91001."""
    link.sign_on()
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(Ping(), msg_id=msg_id))
    link.send(b"NOTDIGIT")
    assert [(m.head.msg_ref, m.body.result) for m in link.received()] == [(msg_id, 90000), ("", 91001)]


# --- identity -----------------------------------------------------------------------------------------------------


def test_a_header_src_other_than_the_bound_bank_is_91004_and_closes(link: Link, db_engine: Engine) -> None:
    """A correctly signed message whose Src is another bank: 91004, then the connection is closed."""
    link.sign_on()
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(Ping(), msg_id=msg_id, src="CCB"))
    reply = only(link.received())
    assert (reply.body.result, reply.head.msg_ref) == (91004, msg_id)
    assert link.transport.disconnecting
    link.send(link.bank.frame(Ping()))
    assert link.received() == []


def test_a_header_des_other_than_the_gateway_is_91004_and_closes(link: Link) -> None:
    """A message addressed to another node is refused as an identity error."""
    link.sign_on()
    link.send(link.bank.frame(Ping(), des="450200000000"))
    assert only(link.received()).body.result == 91004
    assert link.transport.disconnecting


def test_a_message_signed_by_another_bank_is_91003_and_stays_open(link: Link, config: Config) -> None:
    """Verification uses the bound bank's pinned certificate: CCB's signature on the ICBC link is 91003."""
    link.sign_on()
    ccb = make_bank(config, "CCB")
    link.send(ccb.frame(Ping(), src="ICBC"))
    assert only(link.received()).body.result == 91003
    assert not link.transport.disconnecting


def test_an_unknown_peer_certificate_is_closed_without_processing(
    hub: Hub, clock: Clock, config: Config, db_engine: Engine
) -> None:
    """A certificate of the bank CA that no configured bank holds: closed, not bound, nothing read or written."""
    stranger = make_bank(config, "ABC")
    link = connect(hub, clock, stranger, peer_certificate(config, "ABC"))
    assert link.transport.disconnecting
    assert link.session.bank_code is None and all(not s for s in hub.sessions.values())
    link.send(stranger.frame(SignOn(bank_code="ABC", last_work_date=date(2026, 11, 20))))
    assert link.transport.value() == b""
    assert archived(db_engine) == [] and count_inbound(db_engine) == 0


def test_no_peer_certificate_is_closed(hub: Hub, clock: Clock, icbc: Bank) -> None:
    """Without a peer certificate the session is closed and not bound."""
    link = connect(hub, clock, icbc, None)
    assert link.transport.disconnecting and link.session.bank_code is None


def test_replies_go_back_on_the_connection_the_request_came_in_on(
    hub: Hub, clock: Clock, config: Config, icbc: Bank
) -> None:
    """Two sessions of one bank: each request is answered on its own connection."""
    first = connect(hub, clock, icbc, peer_certificate(config, "ICBC"))
    second = connect(hub, clock, icbc, peer_certificate(config, "ICBC"))
    first.sign_on()
    second.sign_on()
    msg_id = icbc.next_msg_id()
    second.send(icbc.frame(Ping(), msg_id=msg_id))
    assert first.received() == []
    assert only(second.received()).head.msg_ref == msg_id
    assert len(hub.live_sessions("ICBC")) == 2


# --- the hub end to end over one session ----------------------------------------------------------------------------


def submit(engine: Engine, *vouchers: Any) -> list[service.Submitted]:
    with engine.begin() as conn:
        return service.submit(conn, [("ICBC", v) for v in vouchers], "test", NOW.replace(tzinfo=None), NODE, ["ICBC"])


def test_a_voucher_goes_out_on_sign_on_and_is_paid_exactly_once(link: Link, db_engine: Engine) -> None:
    """Sign-on sends what is due; the ack delivers it; the receipt pays it; the same receipt again changes
    nothing and gets the same answer; the voucher's history proves itself."""
    voucher = samples.direct_voucher()
    submit(db_engine, voucher)
    messages = [link.sign_on(), *link.received()]
    sent = [m for m in messages if m.head.msg_no == "5201"]
    assert len(sent) == 1 and sent[0].body == voucher
    assert voucher_state(db_engine, voucher.key) == "SENT"
    assert link.session.in_flight == 1
    link.send(link.bank.frame(Reply(ori_msg_no="5201", result=90000, add_word=""), msg_ref=sent[0].head.msg_id))
    assert link.received() == []  # a reply is not answered
    assert voucher_state(db_engine, voucher.key) == "DELIVERED" and link.session.in_flight == 0
    receipt_id = link.bank.next_msg_id()
    receipt_frame = link.bank.frame(samples.receipt(), msg_id=receipt_id)
    link.send(receipt_frame)
    link.send(receipt_frame)
    answers = link.received()
    assert [(m.head.msg_ref, m.body.result) for m in answers] == [(receipt_id, 90000)] * 2
    assert voucher_state(db_engine, voucher.key) == "PAID"
    assert all_chains_verify(db_engine)


def test_the_in_flight_window_limits_unanswered_messages(config: Config, db_engine: Engine, clock: Clock) -> None:
    """With max_in_flight 2, three due vouchers go out two at a time: the third only after an answer."""
    hub = make_hub(config, db_engine, clock, max_in_flight=2)
    link = connect(hub, clock, make_bank(config, "ICBC"), peer_certificate(config, "ICBC"))
    vouchers = [samples.direct_voucher(f"520145010000012{n}") for n in range(3)]
    submit(db_engine, *vouchers)
    link.sign_on()
    first = [m for m in link.received() if m.head.msg_no == "5201"]
    assert [m.body.voucher_no for m in first] == [v.voucher_no for v in vouchers[:2]]
    assert link.session.in_flight == 2
    link.send(link.bank.frame(Reply(ori_msg_no="5201", result=90000, add_word=""), msg_ref=first[0].head.msg_id))
    clock.advance(0)  # the dispatcher runs again on the next turn when it was busy
    assert [m.body.voucher_no for m in link.received() if m.head.msg_no == "5201"] == [vouchers[2].voucher_no]


def test_in_flight_falls_only_when_a_message_is_answered_for_the_first_time(
    config: Config, db_engine: Engine, clock: Clock
) -> None:
    """The probe's answer and a second ack of the same voucher leave the count of unanswered messages alone."""
    hub = make_hub(config, db_engine, clock, idle_timeout_s=10.0)  # the probe comes before any resend is due
    link = connect(hub, clock, make_bank(config, "ICBC"), peer_certificate(config, "ICBC"))
    submit(db_engine, samples.direct_voucher("5201450100000001"), samples.direct_voucher("5201450100000002"))
    link.sign_on()
    sent_ids = [m.head.msg_id for m in link.received() if m.head.msg_no == "5201"]
    counts = [link.session.in_flight]
    clock.advance(10)
    (probe,) = link.received()
    link.send(link.bank.frame(Reply(ori_msg_no="9005", result=90000, add_word=""), msg_ref=probe.head.msg_id))
    counts.append(link.session.in_flight)
    ack = Reply(ori_msg_no="5201", result=90000, add_word="")
    link.send(link.bank.frame(ack, msg_ref=sent_ids[0]))
    counts.append(link.session.in_flight)
    link.send(link.bank.frame(ack, msg_ref=sent_ids[0]))  # the bank answers twice
    counts.append(link.session.in_flight)
    assert counts == [2, 2, 1, 1]


def test_a_message_settled_without_its_ack_leaves_the_window(config: Config, db_engine: Engine, clock: Clock) -> None:
    """A receipt that overtakes a lost acknowledgement settles the voucher's message: once the window is full, the
    dispatcher forgets such messages instead of waiting for an answer that will never come."""
    hub = make_hub(config, db_engine, clock, max_in_flight=1)
    link = connect(hub, clock, make_bank(config, "ICBC"), peer_certificate(config, "ICBC"))
    first, second = samples.direct_voucher(), samples.direct_voucher("5201450100000124")
    submit(db_engine, first, second)
    link.sign_on()
    assert [m.body.voucher_no for m in link.received() if m.head.msg_no == "5201"] == [first.voucher_no]
    link.send(link.bank.frame(samples.receipt()))  # paid; its 9120 never came
    clock.advance(0)
    messages = link.received()
    assert [m.body.result for m in messages if m.head.msg_no == "9120"] == [90000]
    assert [m.body.voucher_no for m in messages if m.head.msg_no == "5201"] == [second.voucher_no]
    assert link.session.in_flight == 1


def test_a_sign_on_during_a_store_outage_is_answered_91099_and_not_signed_on(link: Link, hub: Hub) -> None:
    """Nothing recorded, so nothing happened: the link is not signed on and the bank signs on again later."""
    hub.db = InlineDatabase(create_engine_for("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=2))
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(SignOn(bank_code="ICBC", last_work_date=date(2026, 11, 20)), msg_id=msg_id))
    reply = only(link.received())
    assert (reply.head.msg_no, reply.head.msg_ref, reply.body.result) == ("9120", msg_id, 91099)
    assert not link.session.signed_on and not link.transport.disconnecting


def test_a_voucher_waits_for_sign_on(link: Link, hub: Hub, db_engine: Engine) -> None:
    """Nothing but replies goes to a connection that has not signed on."""
    submit(db_engine, samples.direct_voucher())
    hub.kick("ICBC")
    assert link.received() == []
    assert voucher_state(db_engine, samples.direct_voucher().key) == "ACCEPTED"


def test_a_store_outage_answers_a_request_91099_and_records_nothing(link: Link, hub: Hub, db_engine: Engine) -> None:
    """With the store unreachable a receipt is answered 91099 (retry later) and nothing is recorded."""
    submit(db_engine, samples.direct_voucher())
    link.sign_on()
    link.received()
    hub.db = InlineDatabase(create_engine_for("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=2))
    msg_id = link.bank.next_msg_id()
    link.send(link.bank.frame(samples.receipt(), msg_id=msg_id))
    reply = only(link.received())
    assert (reply.head.msg_ref, reply.body.result) == (msg_id, 91099)
    assert not link.transport.disconnecting
    assert count_inbound(db_engine) == 0


def test_a_store_outage_does_not_cut_a_probing_bank_off(link: Link, hub: Hub) -> None:
    """A 9005 while the store is unreachable is answered (the link stays up) rather than aborted."""
    link.sign_on()
    hub.db = InlineDatabase(create_engine_for("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=2))
    link.send(link.bank.frame(Ping()))
    assert not link.transport.aborted
    assert [m.head.msg_no for m in link.received()] == ["9120"]


def test_outbound_replies_are_archived_as_the_signed_document(link: Link, db_engine: Engine, config: Config) -> None:
    """The archived 9007 is the signed XML document exactly as signed: it verifies with the gateway's key (at
    8abcffd the archive held the frame, 8-byte length header included)."""
    link.sign_on()
    (row,) = [r for r in archived(db_engine, direction="out")]
    STANDARD_DIALECT.verify_document(bytes(row["raw"]), Verifier(load_certificate(config.signing_cert)))


# --- the write-buffer cap, over real TLS in memory -------------------------------------------------------------------


class Socket(FileDescriptor):
    """The TCP side of a connection without a kernel: what the TLS layer writes stays in Twisted's own write
    buffer (`_tempDataBuffer`/`dataBuffer`, exactly as on a real `tcp.Server`) until :meth:`drain` moves up to
    `window` bytes of it to the peer, which is what happens when the peer reads."""

    def __init__(self) -> None:
        super().__init__(reactor=MemoryReactor())
        self.connected = 1
        self.window = 0
        self.delivered = bytearray()
        self.aborted = False

    def writeSomeData(self, data: bytes) -> int:
        n = min(len(data), self.window)
        self.delivered += bytes(data[:n])
        self.window -= n
        return n

    def drain(self, window: int) -> bytes:
        """The peer reads up to `window` bytes. As on a real socket, the reactor calls doWrite only when the
        socket is writable, that is when the peer has read something."""
        if window <= 0 or not self.pending():
            return b""
        self.window = window
        self.doWrite()
        self.window = 0
        out, self.delivered = bytes(self.delivered), bytearray()
        return out

    def pending(self) -> int:
        return len(self.dataBuffer) - self.offset + self._tempDataLen

    def abortConnection(self) -> None:
        self.aborted = True

    def loseConnection(self, *args: Any) -> None:
        self.disconnecting = True

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


class TlsLink:
    """A bank session behind the gateway's real TLS context, and a bank TLS client, joined in memory."""

    def __init__(self, hub: Hub, clock: Clock, config: Config, client_code: str) -> None:
        # Twisted's TLS transport aggregates small writes until the next reactor turn: the fake clock is that turn.
        self.clock = clock
        server_factory = TLSMemoryBIOFactory(BankTlsContext(config), False, BankSessionFactory(hub, clock), clock=clock)
        self.server: TLSMemoryBIOProtocol = server_factory.buildProtocol(None)
        self.socket = Socket()
        pki = config.directory / "pki"
        options = ssl.optionsForClientTLS(
            "localhost",
            trustRoot=ssl.Certificate.loadPEM(config.ca_cert.read_bytes()),
            clientCertificate=ssl.PrivateCertificate.loadPEM(
                (pki / "banks" / client_code / "cert.pem").read_bytes()
                + (pki / "banks" / client_code / "key.pem").read_bytes()
            ),
        )
        self.received = bytearray()
        outer = self

        class Client(Protocol):
            def dataReceived(self, data: bytes) -> None:
                outer.received += data

        self.client: TLSMemoryBIOProtocol = TLSMemoryBIOFactory(
            options, True, Factory.forProtocol(Client), clock=clock
        ).buildProtocol(None)
        self.client_transport = StringTransport()
        self.server.makeConnection(self.socket)
        self.client.makeConnection(self.client_transport)
        self.pump()

    @property
    def session(self) -> BankSession:
        session = self.server.wrappedProtocol
        assert isinstance(session, BankSession)
        return session

    def pump(self, window: int = 1 << 30) -> None:
        """Move bytes both ways until nothing moves; the bank reads at most `window` bytes per round."""
        for _ in range(50):
            self.clock.advance(0)
            up = self.client_transport.value()
            self.client_transport.clear()
            down = self.socket.drain(window)
            if not up and not down:
                return
            if up:
                self.server.dataReceived(up)
            if down:
                self.client.dataReceived(down)

    def write(self, frame: bytes) -> None:
        self.client.write(frame)
        self.pump()


def test_tls_binds_the_client_certificate_to_its_bank(hub: Hub, clock: Clock, config: Config, icbc: Bank) -> None:
    """Over real TLS with the gateway's context, ICBC's client certificate binds the session to ICBC."""
    link = TlsLink(hub, clock, config, "ICBC")
    assert link.session.bank_code == "ICBC"
    link.write(icbc.frame(SIGN_ON))
    assert [m.head.msg_no for m in icbc.read(bytes(link.received))] == ["9007"]


def test_tls_peer_of_no_configured_bank_is_closed(hub: Hub, clock: Clock, config: Config) -> None:
    """A valid certificate of the bank CA whose bank is not configured: the session closes and binds nothing."""
    link = TlsLink(hub, clock, config, "ABC")
    assert link.session.bank_code is None and link.session.closing
    assert all(not s for s in hub.sessions.values())


def test_tls_refuses_a_revoked_certificate(hub: Hub, clock: Clock, config: Config) -> None:
    """A revoked bank certificate fails the handshake: the session is never bound."""
    pki = PkiDirectory(config.directory / "pki")
    pki.revoke(load_certificate(pki.bank_cert_path("CCB")), "keyCompromise", NOW)
    link = TlsLink(hub, clock, config, "CCB")
    assert link.session.bank_code is None
    assert hub.sessions["CCB"] == []


def turn(link: TlsLink, icbc: Bank, frames: int = 1, window: int = 0) -> None:
    """One reactor turn: the bank sends `frames` probes (each answered by a signed 9120 of about 2 kB) and
    reads at most `window` bytes."""
    link.client.write(b"".join(icbc.frame(Ping()) for _ in range(frames)))
    link.pump(window)


def tls_link_with_cap(config: Config, db_engine: Engine, clock: Clock, icbc: Bank, cap: int) -> TlsLink:
    hub = make_hub(config, db_engine, clock, max_write_buffer_bytes=cap)
    link = TlsLink(hub, clock, config, "ICBC")
    link.write(icbc.frame(SIGN_ON))
    assert link.session.signed_on
    return link


def test_a_bank_that_does_not_read_is_cut_off_at_the_write_buffer_cap(
    config: Config, db_engine: Engine, clock: Clock, icbc: Bank
) -> None:
    """Replies pile up in the TCP write buffer while the bank does not read; the first write that finds more
    than max_write_buffer_bytes waiting aborts the connection, and none before it does.

    write_frame measures after `transport.write`, but Twisted's TLS transport (BufferingTLSTransport) holds
    small writes in an aggregation buffer (at most 64 kB) until the next reactor turn, which the measurement
    does not see: the cut-off comes on the first write of the turn after the buffer passed the cap.
    """
    cap = 20_000
    link = tls_link_with_cap(config, db_engine, clock, icbc, cap)
    waiting_before = []
    for _ in range(100):
        waiting_before.append(link.socket.pending())
        turn(link, icbc)
        if link.socket.aborted:
            break
    assert link.socket.aborted and link.session.closing
    assert waiting_before[-1] > cap
    assert all(waiting <= cap for waiting in waiting_before[:-1])


def test_a_bank_that_reads_is_never_cut_off(config: Config, db_engine: Engine, clock: Clock, icbc: Bank) -> None:
    """A bank that keeps reading may receive far more than the cap in total."""
    cap = 20_000
    link = tls_link_with_cap(config, db_engine, clock, icbc, cap)
    for _ in range(25):
        turn(link, icbc, frames=5, window=1 << 30)
    assert not link.socket.aborted
    assert len(icbc.read(bytes(link.received))) == 126  # the 9007 and 125 answers, all read
    assert len(link.received) > 10 * cap


def test_a_slow_reader_is_measured_by_what_it_has_not_read(
    config: Config, db_engine: Engine, clock: Clock, icbc: Bank
) -> None:
    """Only unsent bytes count against the cap: a bank that read most of a burst is not cut off."""
    cap = 30_000
    link = tls_link_with_cap(config, db_engine, clock, icbc, cap)
    turn(link, icbc, frames=13)  # a burst of about 26 kB (a signed 9120 is some 2 kB), all waiting
    burst = link.socket.pending()
    assert cap // 2 < burst <= cap
    link.client.dataReceived(link.socket.drain(burst - 2_000))  # the bank reads all but 2 kB of it
    for _ in range(5):
        waiting = link.socket.pending()
        assert waiting < cap // 2
        turn(link, icbc, frames=1)
        assert not link.socket.aborted, f"cut off with {waiting} bytes waiting (cap {cap})"


def test_a_plain_string_transport_has_no_buffer_to_measure(link: Link, hub: Hub) -> None:
    """The cap reads the TLS and TCP layers' buffers; a transport without them (StringTransport) counts as
    empty, which is why the cap is tested above over TLSMemoryBIOProtocol and a FileDescriptor."""
    assert link.session._buffered_bytes() == 0
    link.session.write_frame(b"x" * (hub.config.session.max_write_buffer_bytes + 1))
    assert not link.transport.aborted


def test_session_factory_builds_sessions_on_its_hub_and_clock(hub: Hub, clock: Clock) -> None:
    session = BankSessionFactory(hub, clock).buildProtocol(None)
    assert isinstance(session, BankSession) and session.hub is hub and session.clock is clock
    other = BankSessionFactory(hub, clock).buildProtocol(None)
    assert other.connection_id != session.connection_id
