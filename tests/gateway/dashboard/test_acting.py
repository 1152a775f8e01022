"""Acting on vouchers, links and certificates from the dashboard, on both backends: an approver settles a voucher in
doubt (an operator event in the history), revoking a bank's certificate closes its sessions, issuing one pins it at
once, and stopping the gateway ends the live streams.

The hub runs on the fake clock with the synchronous store (tests/gateway/conftest.py), so each request completes
inside `render`."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy.engine import Connection
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from gateway.auth import accounts
from gateway.config import Config
from gateway.dashboard.server import Dashboard
from gateway.hub import Hub
from gateway.payments import queries, service
from gateway.store import repo
from protocols.messages import Ping, Reply, VoucherKey
from tests.gateway.conftest import Bank, connect, make_bank, peer_certificate
from tests.gateway.dashboard.test_web_auth import Req, audit, csrf_of, serve, sign_in, submit
from tests.gateway.dashboard.test_web_auth import site as site


def _in_doubt(hub: Hub, no: str) -> str:
    """Submitted, sent to CCB, and past its receipt deadline: IN_DOUBT, a 9101 queued."""
    key = submit(hub, no)
    items = hub.db.run(service.claim_outbox, "CCB", hub.now(), 10, "test-node", False).result
    hub.db.run(service.mark_sent, "CCB", {i.id: b"<signed/>" for i in items}, hub.now(), hub.config.payments)
    later = hub.now() + timedelta(seconds=hub.config.payments.receipt_deadline_s + 1)
    hub.db.run(service.tick, later, hub.config.payments, hub.config.node)
    assert hub.db.run(queries.get_voucher, VoucherKey.parse(key)).result["state"] == "IN_DOUBT"
    return key


def test_an_approver_settles_a_voucher_in_doubt_as_an_operator_event(
    site: tuple[Resource, Dashboard], hub: Hub
) -> None:
    root, _ = site
    key = _in_doubt(hub, "ACT1")
    approver = sign_in(root, "anna")
    done = serve(
        root,
        Req(
            "POST",
            f"/vouchers/{quote(key)}/resolve",
            {
                "_csrf": csrf_of(root, approver),
                "resolution": "paid",
                "evidence": "建行来函确认已付 CCB letter",
                "serial": "CCB778",
                "pay_date": "2026-11-23",
            },
            cookies=approver,
        ),
    )
    assert done.responseCode == 303, done.body
    found = hub.db.run(queries.get_voucher, VoucherKey.parse(key)).result
    assert found["state"] == "PAID" and found["x_agent_business_no"] == "CCB778"
    last = found["timeline"][-1]
    assert (last["event"], last["actor"], last["to"]) == ("operator_paid", "operator:anna", "PAID")
    assert "receipt_paid" not in [t["event"] for t in found["timeline"]]

    def chain(conn: Connection) -> tuple[bool, dict[str, object]]:
        rec = repo.get_voucher_by_key(conn, VoucherKey.parse(key))
        assert rec is not None
        return repo.verify_chain(conn, rec.id), json.loads(repo.history(conn, rec.id)[-1].detail)

    ok, detail = hub.db.run(chain).result
    assert ok and detail["evidence"] == "建行来函确认已付 CCB letter" and detail["resolution"] == "paid"
    page = serve(root, Req("GET", f"/vouchers/{quote(key)}", cookies=approver))
    assert "operator_paid" in page.body and "operator:anna" in page.body
    assert ("operator:anna", "voucher.resolve", "ok") in audit(hub)


# --- certificates: revoke cuts the links on it, issue pins the new one at once ----------------------------------


def _post(root: Resource, cookies: dict[bytes, bytes], path: str, **form: str) -> Req:
    return serve(root, Req("POST", path, {"_csrf": csrf_of(root, cookies), **form}, cookies=cookies))


def _bank_now(config: Config, code: str) -> Bank:
    """The bank's side with whatever certificate and key its files hold now (loaded now, kept in memory)."""
    return make_bank(config, code)


def test_issue_pins_the_new_certificate_at_once_and_revoke_cuts_the_links_on_the_old_one(
    site: tuple[Resource, Dashboard], hub: Hub, clock: Clock, config: Config
) -> None:
    root, _ = site
    admin = sign_in(root, "adam")
    old_bank = _bank_now(config, "ICBC")
    old_peer = peer_certificate(config, "ICBC")
    old_serial = old_peer.to_cryptography().serial_number
    old_link = connect(hub, clock, old_bank, old_peer)
    old_link.sign_on()
    ccb_link = connect(hub, clock, _bank_now(config, "CCB"), peer_certificate(config, "CCB"))
    ccb_link.sign_on()

    issued = _post(root, admin, "/banks/ICBC/issue")
    assert issued.responseCode == 303, issued.body
    new_bank = _bank_now(config, "ICBC")
    new_peer = peer_certificate(config, "ICBC")
    new_serial = new_peer.to_cryptography().serial_number
    assert new_serial != old_serial
    assert type(new_peer.to_cryptography().public_key()) is type(old_peer.to_cryptography().public_key())
    assert (config.directory / "pki" / "banks" / "ICBC" / "previous" / f"{old_serial:x}.pem").exists()
    assert hub.verifiers["ICBC"].serials == {old_serial, new_serial}  # type: ignore[attr-defined]
    # no restart: a link on the new certificate signs on, and its signed messages verify
    new_link = connect(hub, clock, new_bank, new_peer)
    assert new_link.session.bank_code == "ICBC"
    new_link.sign_on()
    new_link.send(new_bank.frame(Ping()))
    [pong] = new_link.received()
    assert isinstance(pong.body, Reply) and pong.body.result == 90000
    # and the old certificate still works until it is revoked
    old_link.send(old_bank.frame(Ping()))
    [pong] = old_link.received()
    assert isinstance(pong.body, Reply) and pong.body.result == 90000
    page = serve(root, Req("GET", "/banks", cookies=admin))
    assert f'id="revoke-ICBC-{old_serial:x}"' in page.body and "以前的证书" in page.body

    revoked = _post(root, admin, "/banks/ICBC/revoke", serial=format(old_serial, "x"), reason="superseded")
    assert revoked.responseCode == 303, revoked.body
    # the link on the revoked certificate is cut at once; the one on the new certificate and CCB's stay
    assert old_link.transport.aborted and old_link.session.closing
    assert not new_link.transport.aborted and not ccb_link.transport.aborted
    assert hub.live_sessions("ICBC") == [new_link.session]
    assert hub.verifiers["ICBC"].serials == {new_serial}  # type: ignore[attr-defined]
    # a signature with the revoked key no longer verifies (on the surviving link, for want of another)
    new_link.send(old_bank.frame(Ping()))
    [refused] = new_link.received()
    assert isinstance(refused.body, Reply) and refused.body.result == 91003
    new_link.send(new_bank.frame(Ping()))
    [pong] = new_link.received()
    assert isinstance(pong.body, Reply) and pong.body.result == 90000
    entries = hub.db.run(accounts.list_audit).result["entries"]
    closes = [e for e in entries if e["action"] == "link.close"]
    assert len(closes) == 1 and closes[0]["actor"] == "operator:adam" and closes[0]["target"] == "ICBC"
    assert closes[0]["detail"]["connections"] == [old_link.session.connection_id]
    assert [a for a in audit(hub) if a[1].startswith("cert.")] == [
        ("operator:adam", "cert.issue", "ok"),
        ("operator:adam", "cert.revoke", "ok"),
    ]


def test_revoke_refuses_a_serial_not_of_the_bank_and_changes_nothing(
    site: tuple[Resource, Dashboard], hub: Hub, clock: Clock, config: Config
) -> None:
    root, dash = site
    admin = sign_in(root, "adam")
    link = connect(hub, clock, _bank_now(config, "ICBC"), peer_certificate(config, "ICBC"))
    link.sign_on()
    ccb_serial = peer_certificate(config, "CCB").to_cryptography().serial_number
    for serial, reason in ((format(ccb_serial, "x"), "keyCompromise"), ("zz", "keyCompromise"), ("1", "because")):
        refused = _post(root, admin, "/banks/ICBC/revoke", serial=serial, reason=reason)
        assert refused.responseCode == 409, (serial, reason)
    assert dash.pki.revoked_entries() == [] and not link.transport.aborted
    assert [a for a in audit(hub) if a[1].startswith("cert.")] == [("operator:adam", "cert.revoke", "failed")] * 3
    operator = sign_in(root, "otto")
    serial = format(peer_certificate(config, "ICBC").to_cryptography().serial_number, "x")
    assert _post(root, operator, "/banks/ICBC/revoke", serial=serial, reason="keyCompromise").responseCode == 403
    assert _post(root, operator, "/banks/ICBC/issue").responseCode == 403
    assert dash.pki.revoked_entries() == [] and not link.transport.aborted
