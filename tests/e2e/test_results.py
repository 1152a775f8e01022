"""Every result code of PROTOCOL.md §4, provoked by a raw bank client over mutual TLS and checked on the wire.

The raw client (:class:`tests.e2e.harness.RawBank`) holds the bank's real certificate and signs what it sends
with the bank's key unless a test says otherwise; it verifies every reply with the gateway's pinned signing
certificate. Each test also checks what the gateway recorded (the archive, the idempotency records).
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from banks.standard import STANDARD_DIALECT
from certs import pki
from certs.store import PkiDirectory
from gateway.store.db import create_engine_for
from protocols import codec
from protocols.messages import Message, Ping, Reply, SignOn
from protocols.signature import Signer
from tests.e2e.harness import (
    E2E,
    RawBank,
    archive_rows,
    direct_voucher,
    events_of,
    inbound_rows,
    receipt_for,
    today_cst,
)

UNKNOWN = direct_voucher("5201450100099999")  # never submitted


def _reply(message: Message) -> Reply:
    assert isinstance(message.body, Reply), message
    return message.body


def _still_open(raw: RawBank) -> None:
    """The link is still up: a ping on it is answered 90000."""
    assert _reply(raw.request(Ping())).result == 90000


def _rejections(e2e: E2E, result: int, count: int) -> list[dict[str, Any]]:
    """The inbound documents answered `result`, once `count` are archived (a refusal is archived after its reply)."""

    def archived(conn: Any) -> list[dict[str, Any]] | None:
        rows = [r for r in archive_rows(conn, direction="in") if r["result_code"] == result]
        return rows if len(rows) >= count else None

    rows: list[dict[str, Any]] = e2e.until_store(archived, what=f"{count} refusals {result} in the archive")
    assert len(rows) == count, rows
    return rows


def _issue(e2e: E2E, code: str, *, own_ca: bool = True) -> tuple[Path, Path, Signer]:
    """A new key and a certificate for bank `code`, from the instance's bank CA (or from a CA of its own)."""
    now = datetime.now(UTC)
    if own_ca:
        ca_cert, ca_key = PkiDirectory(e2e.instance.directory / "pki").load_ca()
    else:
        ca_key = pki.generate_key("rsa")
        ca_cert = pki.create_ca(ca_key, now, common_name="Some Other CA")
    key = pki.generate_key("rsa")
    cert = pki.issue_bank_cert(ca_cert, ca_key, key, code, now)
    directory = e2e.instance.directory / "extra" / f"{code}-{cert.serial_number:x}"
    directory.mkdir(parents=True)
    pki.save_certificates(directory / "cert.pem", cert)
    pki.save_private_key(directory / "key.pem", key)
    return directory / "cert.pem", directory / "key.pem", Signer(key, cert)  # type: ignore[arg-type]


def _signed_with_field(raw: RawBank, payload: Any, field: str, text: str) -> tuple[str, bytes]:
    """A correctly signed document of `payload` whose `field` holds `text` (something the schema refuses)."""
    msg_id = raw.new_msg_id()
    root = codec.to_tree(Message(raw.head(payload, msg_id), payload))
    element = root.find(f"Body/*/{field}")
    assert element is not None, field
    element.text = text
    etree.indent(root)
    return msg_id, raw.signer.sign(root)


def test_a_ping_is_answered_90000_before_and_after_sign_on(e2e: E2E) -> None:
    """9005 is answered by a 9120 with 90000 naming the ping, on a fresh link and on a signed-on one."""
    e2e.start()
    for raw in (e2e.raw(sign_on=False), e2e.raw()):
        msg_id = raw.send(Ping())
        reply = raw.reply_to(msg_id)
        assert (reply.head.msg_no, reply.head.msg_ref, reply.head.src, reply.head.des) == (
            "9120",
            msg_id,
            e2e.instance.config().node,
            "ICBC",
        )
        assert (_reply(reply).ori_msg_no, _reply(reply).result) == ("9005", 90000)
    pings = e2e.archive(direction="in", msg_no="9005")
    assert len(pings) == 2 and all(r["verified"] is True for r in pings)


def test_a_bad_frame_header_is_answered_91001_and_the_link_closed(e2e: E2E) -> None:
    """A length that is not 8 digits, or one above the maximum, gets a 91001 with empty MsgRef, then the close."""
    e2e.start()
    for header in (b"12ab5678", b"99999999"):
        raw = e2e.raw()
        raw.send_bytes(header + b"<Message/>")
        reply = raw.reply_to("")
        assert (_reply(reply).result, _reply(reply).ori_msg_no, reply.head.msg_ref) == (91001, "", "")
        assert raw.wait_closed() == [], "the gateway must close the connection after a framing error"
    assert all(r["verified"] is None for r in _rejections(e2e, 91001, 2))


def test_malformed_or_forbidden_xml_is_answered_91001_and_the_link_stays_open(e2e: E2E) -> None:
    """Broken XML, not XML, a DOCTYPE with an external entity (XXE) and an entity bomb each get 91001, nothing more."""
    e2e.start()
    raw = e2e.raw()
    secret = Path("/etc/hostname").read_text(encoding="utf-8").strip() or "localhost"
    documents = [
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Message><Head><MsgNo>5201</MsgNo>',
        b"this is not XML",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE Message [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        b"<Message><Head><Ver>1.0</Ver><MsgNo>9005</MsgNo><MsgId>XXE1</MsgId><MsgRef>XXE1</MsgRef>"
        b"<Src>ICBC</Src><Des>&x;</Des></Head><Body><Ping/></Body></Message>",
        b'<?xml version="1.0"?>\n<!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><m>&d;</m>',
    ]
    for document in documents:
        raw.send_body(document)
        reply = raw.reply_to("")
        assert _reply(reply).result == 91001, (document, reply)
        assert secret not in _reply(reply).add_word
    _still_open(raw)
    rejected = _rejections(e2e, 91001, len(documents))
    assert sorted(bytes(r["raw"]) for r in rejected) == sorted(documents), (
        "each refused document is archived byte for byte"
    )


def test_a_field_of_the_wrong_form_is_answered_91002_naming_the_field(e2e: E2E) -> None:
    """A signed receipt whose amount, date or division code has the wrong form gets 91002; AddWord names it."""
    e2e.start()
    raw = e2e.raw()
    receipt = receipt_for(UNKNOWN)
    for field, text in (("PayAmt", "125000.5"), ("XPayDate", "2026-11-24"), ("AdmDivCode", "ABC")):
        msg_id, document = _signed_with_field(raw, receipt, field, text)
        reply = raw.request(document, msg_id)
        assert (_reply(reply).result, reply.head.msg_ref, _reply(reply).ori_msg_no) == (91002, msg_id, "5201")
        assert field in _reply(reply).add_word, (field, _reply(reply).add_word)
    _still_open(raw)
    assert all(r["verified"] is True for r in _rejections(e2e, 91002, 3))  # the signatures were good
    assert e2e.store(inbound_rows) == []


def test_a_bad_signature_is_answered_91003(e2e: E2E) -> None:
    """A tampered amount, a signature by another key of the same bank, and no signature each get 91003."""
    e2e.start()
    raw = e2e.raw()
    receipt = receipt_for(UNKNOWN)
    msg_id, document = raw.build(receipt)
    tampered = document.replace(b"<PayAmt>125000.00</PayAmt>", b"<PayAmt>125001.00</PayAmt>", 1)
    assert tampered != document
    _, _, impostor = _issue(e2e, "ICBC")  # a genuine ICBC certificate from the bank CA, but not the pinned one
    other_id = raw.new_msg_id()
    other = Message(raw.head(receipt, other_id), receipt)
    unsigned_id = raw.new_msg_id()
    unsigned = codec.encode(Message(raw.head(receipt, unsigned_id), receipt))
    for doc_id, doc in (
        (msg_id, tampered),
        (other_id, impostor.sign(codec.to_indented_tree(other))),
        (unsigned_id, unsigned),
    ):
        reply = raw.request(doc, doc_id)
        assert (_reply(reply).result, reply.head.msg_ref) == (91003, doc_id), _reply(reply)
    _still_open(raw)
    assert all(r["verified"] is False for r in _rejections(e2e, 91003, 3))
    assert e2e.store(inbound_rows) == []


def test_a_header_naming_another_sender_is_answered_91004_and_the_link_closed(e2e: E2E) -> None:
    """Src (or the sign-on's BankCode) other than the TLS peer's bank gets 91004, then the connection closes."""
    e2e.start()
    raw = e2e.raw()
    reply = raw.request(receipt_for(UNKNOWN), src="CCB")
    assert _reply(reply).result == 91004
    assert raw.wait_closed() == []
    raw = e2e.raw(sign_on=False)
    reply = raw.request(SignOn(bank_code="CCB", last_work_date=today_cst()))
    assert _reply(reply).result == 91004
    assert raw.wait_closed() == []
    assert e2e.store(inbound_rows) == []
    assert all(r["verified"] is True for r in _rejections(e2e, 91004, 2))


def test_certificates_of_no_configured_bank_or_not_from_the_bank_ca_or_revoked_are_refused(e2e: E2E) -> None:
    """TLS peers that are not a configured bank are cut off unanswered: another bank, a foreign CA, a revoked cert."""
    gateway = e2e.start()
    unconfigured = _issue(e2e, "ABC")
    foreign = _issue(e2e, "ICBC", own_ca=False)
    revoked_cert, revoked_key, revoked_signer = _issue(e2e, "ICBC")
    PkiDirectory(e2e.instance.directory / "pki").revoke(
        pki.load_certificate(revoked_cert), "keyCompromise", datetime.now(UTC)
    )
    cert, key, signer = unconfigured  # a good certificate from the bank CA: the handshake completes, then the cut
    raw = e2e.raw("ABC", cert=cert, key=key, signer=signer, sign_on=False)
    raw.send(SignOn(bank_code="ABC", last_work_date=today_cst()))
    assert raw.wait_closed() == [], "the gateway answered a bank it does not know"
    for what, (cert, key, signer) in (
        ("foreign CA", foreign),
        ("revoked", (revoked_cert, revoked_key, revoked_signer)),
    ):
        try:  # refused by the TLS layer: during the handshake (TLS 1.2) or right after it (TLS 1.3)
            raw = e2e.raw("ICBC", cert=cert, key=key, signer=signer, sign_on=False)
            raw.send(SignOn(bank_code="ICBC", last_work_date=today_cst()))
            answered = raw.wait_closed()
        except (ssl.SSLError, ConnectionError):
            answered = []
        assert answered == [], f"the gateway answered a peer with a {what} certificate"
    assert e2e.rt.call(lambda: [len(s) for s in gateway.hub.sessions.values()]) == [0]
    assert e2e.archive() == [], "nothing from a refused peer reaches the store"
    _still_open(e2e.raw())  # the bank's own certificate still works


def test_a_msg_id_reused_for_other_content_is_answered_91005(e2e: E2E) -> None:
    """The same MsgId with another Body gets 91005; with the same Body again, the first answer again."""
    e2e.start()
    raw = e2e.raw()
    first = receipt_for(UNKNOWN, serial="ICBC2026112400000001")
    msg_id = raw.new_msg_id()
    reply = _reply(raw.request(first, msg_id))
    assert reply.result == 91006
    other = receipt_for(UNKNOWN, serial="ICBC2026112400000002")
    assert _reply(raw.request(other, msg_id)).result == 91005
    again = _reply(raw.request(first, msg_id))  # re-signed, new SendTime: the same content all the same
    assert (again.result, again.add_word) == (reply.result, reply.add_word)
    (record,) = e2e.store(inbound_rows, msg_id)
    assert record["result"] == 91006


def test_anything_but_a_ping_or_sign_on_before_sign_on_is_answered_91006(e2e: E2E) -> None:
    """Before its 9006 a link gets 91006 for other messages and is sent nothing but replies."""
    e2e.start()
    (key,) = e2e.submit(direct_voucher("5201450100000101"))  # waiting in the outbox for a signed-on link
    raw = e2e.raw(sign_on=False)
    reply = raw.request(receipt_for(UNKNOWN))
    assert _reply(reply).result == 91006 and "9006" in _reply(reply).add_word
    reply = raw.request(Reply(ori_msg_no="5201", result=90000, add_word=""), msg_ref="V0")
    assert _reply(reply).result == 91006
    _still_open(raw)
    assert raw.inbox == [], "nothing but replies goes to a link that has not signed on"
    assert e2e.voucher(key)["state"] == "ACCEPTED"
    raw.sign_on()
    assert raw.expect("5201").body.voucher_no == key.voucher_no  # type: ignore[attr-defined]
    assert e2e.store(inbound_rows) == []


def test_a_receipt_for_an_unknown_voucher_is_answered_91006_and_raised(e2e: E2E) -> None:
    """A business refusal: 91006 naming the voucher, recorded (a resend gets the same), and an operator alert."""
    e2e.start()
    raw = e2e.raw()
    msg_id, document = raw.build(receipt_for(UNKNOWN))
    reply = _reply(raw.request(document, msg_id))
    assert reply.result == 91006 and UNKNOWN.voucher_no in reply.add_word
    assert _reply(raw.request(document, msg_id)) == reply
    (record,) = e2e.store(inbound_rows, msg_id)
    assert (record["result"], record["add_word"]) == (91006, reply.add_word)
    alerts = events_of(e2e.events, "alert")
    assert len(alerts) == 1 and alerts[0]["msg_id"] == msg_id


def test_a_store_outage_is_answered_91099_records_nothing_and_the_same_msg_id_succeeds_later(e2e: E2E) -> None:
    """With the store unreachable a receipt gets 91099 and leaves no trace; resent later it is applied."""
    gateway = e2e.start()
    raw = e2e.raw()
    voucher = direct_voucher("5201450100000102")
    (key,) = e2e.submit(voucher)
    raw.ack(raw.expect("5201"))
    before = e2e.wait_state(key, "DELIVERED")

    # The store becomes unreachable: the gateway's engine now points where no database answers.
    if e2e.instance.backend == "sqlite":
        unreachable = f"sqlite:///{e2e.instance.directory / 'no-such-directory' / 'gateway.db'}"
    else:
        unreachable = "postgresql://postgres@127.0.0.1:1/tgw_test_unreachable"
    database = gateway.running.db
    engine = database.engine
    database.engine = create_engine_for(unreachable, connect_timeout_s=2)
    msg_id, document = raw.build(receipt_for(voucher))
    try:
        reply = raw.request(document, msg_id)
    finally:
        database.engine.dispose()
        database.engine = engine
    assert (_reply(reply).result, reply.head.msg_ref, _reply(reply).ori_msg_no) == (91099, msg_id, "5201")
    _still_open(raw)
    assert e2e.store(inbound_rows, msg_id) == []
    assert e2e.archive(msg_id=msg_id) == []
    assert e2e.voucher(key)["timeline"] == before["timeline"]

    assert _reply(raw.request(document, msg_id)).result == 90000  # the same MsgId, once the store is back
    found = e2e.voucher(key)
    assert found["state"] == "PAID" and found["chain_ok"]
    assert [r["result"] for r in e2e.store(inbound_rows, msg_id)] == [90000]
    verifier = e2e.instance.gateway_verifier()

    def replies_to_the_receipt(conn: Any) -> list[Reply] | None:
        sent = [STANDARD_DIALECT.decode(bytes(r["raw"]), verifier).message for r in archive_rows(conn, direction="out")]
        replies = [_reply(m) for m in sent if m.head.msg_ref == msg_id]
        return replies or None

    replies = e2e.until_store(replies_to_the_receipt, what="the reply to the receipt to be archived")
    assert [r.result for r in replies] == [90000], "the 91099 answer must not have been recorded"


def test_a_silent_bank_is_probed_and_cut_off_when_it_does_not_answer(e2e: E2E) -> None:
    """PROTOCOL.md §2: idle for idle_timeout_s, a bank gets a 9005; answered, the link stays; unanswered, it is cut."""
    e2e.start(session={"idle_timeout_s": 0.5, "probe_timeout_s": 0.5})
    raw = e2e.raw()
    probe = raw.expect("9005")
    assert isinstance(probe.body, Ping) and probe.head.des == "ICBC"
    assert probe.head.msg_ref == probe.head.msg_id, "a request's MsgRef is its own MsgId (PROTOCOL.md §3)"
    raw.ack(probe)
    again = raw.expect("9005")  # answered: the link stayed up, and is probed again after the next idle period
    assert again.head.msg_id != probe.head.msg_id
    assert raw.wait_closed() == [], "an unanswered probe must cut the connection"

    def probes(conn: Any) -> list[dict[str, Any]] | None:
        rows = archive_rows(conn, direction="out", msg_no="9005")
        return rows if len(rows) >= 2 else None

    archived = e2e.until_store(probes, what="both probes in the archive")
    assert [r["msg_id"] for r in archived] == [probe.head.msg_id, again.head.msg_id]
