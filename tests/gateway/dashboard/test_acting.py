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
from twisted.web.resource import Resource

from gateway.dashboard.server import Dashboard
from gateway.hub import Hub
from gateway.payments import queries, service
from gateway.store import repo
from protocols.messages import VoucherKey
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
