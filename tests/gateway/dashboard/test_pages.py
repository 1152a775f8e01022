"""Dashboard pages beyond gatekeeping, on both backends: certificates (revoke, issue), overview fragments, metrics
latencies from the hub's events, and the pages that wait for services not attached yet."""

from __future__ import annotations

import pytest
from twisted.web.resource import Resource

from gateway import metrics
from gateway.dashboard import overview
from gateway.dashboard.html import yuan
from gateway.dashboard.server import Dashboard
from gateway.hub import Hub
from tests.gateway.dashboard.test_web_auth import Req, audit, csrf_of, serve, sign_in, submit
from tests.gateway.dashboard.test_web_auth import site as site


def test_yuan() -> None:
    assert [yuan(x) for x in (0, 5, 100, 123456789, -150)] == ["¥0.00", "¥0.05", "¥1.00", "¥1,234,567.89", "-¥1.50"]


def test_revoke_and_issue_are_admin_only_and_audited(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, dash = site
    cert = metrics.read_cert("bank", "ICBC", hub.config.banks["ICBC"].signing_cert)
    assert cert is not None
    operator = sign_in(root, "otto")
    refused = serve(
        root,
        Req(
            "POST",
            "/banks/ICBC/revoke",
            {"_csrf": csrf_of(root, operator), "serial": format(cert.serial, "x"), "reason": "keyCompromise"},
            cookies=operator,
        ),
    )
    assert refused.responseCode == 403 and dash.pki.revoked_entries() == []
    admin = sign_in(root, "adam")
    csrf = csrf_of(root, admin)
    stale = serve(
        root,
        Req("POST", "/banks/ICBC/revoke", {"_csrf": csrf, "serial": "1", "reason": "keyCompromise"}, cookies=admin),
    )
    assert stale.responseCode == 409 and "reload" in stale.body
    done = serve(
        root,
        Req(
            "POST",
            "/banks/ICBC/revoke",
            {"_csrf": csrf, "serial": format(cert.serial, "x"), "reason": "keyCompromise"},
            cookies=admin,
        ),
    )
    assert done.responseCode == 303 and [e.serial for e in dash.pki.revoked_entries()] == [cert.serial]
    issued = serve(root, Req("POST", "/banks/ICBC/issue", {"_csrf": csrf}, cookies=admin))
    assert issued.responseCode == 303
    new = metrics.read_cert("bank", "ICBC", hub.config.banks["ICBC"].signing_cert)
    assert new is not None and new.serial != cert.serial
    page = serve(root, Req("GET", "/banks?done=issue", cookies=admin))
    assert (
        page.responseCode == 200
        and format(new.serial, "x") in page.body
        and "已吊销" not in page.body.split("吊销列表")[0]
    )
    assert [a for a in audit(hub) if a[1].startswith("cert.")] == [
        ("operator:otto", "cert.revoke", "refused"),
        ("operator:adam", "cert.revoke", "failed"),
        ("operator:adam", "cert.revoke", "ok"),
        ("operator:adam", "cert.issue", "ok"),
    ]


def test_overview_fragments_and_placeholders(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    submit(hub, "OV1")
    viewer = sign_in(root, "vera")
    page = serve(root, Req("GET", "/overview", cookies=viewer))
    assert page.responseCode == 200
    for element in ("kpis", "bank-links", "chart-throughput", "chart-states", "state-counts", "in-doubt", "feed"):
        assert f'id="{element}"' in page.body
    assert 'data-state="ACCEPTED"' in page.body and "离线" in page.body
    if not hasattr(hub, "cards"):
        cards = serve(root, Req("GET", "/cards", cookies=viewer))
        assert 'id="not-available"' in cards.body
    recon = serve(root, Req("GET", "/reconciliation", cookies=viewer))
    assert recon.responseCode == 200 and ('id="not-available"' in recon.body or hasattr(hub, "reconciliation"))


def test_live_feed_relays_events_to_open_streams(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, dash = site
    viewer = sign_in(root, "vera")
    stream = Req("GET", "/events", cookies=viewer)
    root.children[b"events"].render(stream)
    assert not stream.finished and stream.header("content-type") == "text/event-stream; charset=utf-8"
    hub.emit("voucher", {"key": "450100-2026-5201-E1", "bank": "ICBC", "state": "PAID", "amount_fen": 100})
    text = stream.body
    assert "event: voucher" in text and '"state":"PAID"' in text and "¥1.00" in text
    assert dash.live.paid_rate()[0] == 1
    hub.clock.advance(overview.SUMMARY_DELAY_S)  # type: ignore[attr-defined]
    assert "event: summary" in stream.body
    stream.processingFailed(Exception("gone"))  # the browser went away
    assert not dash.live.streams


def test_metrics_time_the_answers(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    _, dash = site
    m = dash.metrics
    hub.emit("voucher", {"key": "K1", "bank": "ICBC", "state": "SENT"})
    hub.clock.advance(0.3)  # type: ignore[attr-defined]
    hub.emit("voucher", {"key": "K1", "bank": "ICBC", "state": "DELIVERED"})
    hub.clock.advance(2.0)  # type: ignore[attr-defined]
    hub.emit("voucher", {"key": "K1", "bank": "ICBC", "state": "PAID"})
    m.refresh()
    text = m.exposition().decode()
    assert 'tgw_ack_latency_seconds_bucket{bank="ICBC",le="0.5"} 1.0' in text
    assert 'tgw_receipt_latency_seconds_bucket{bank="ICBC",le="2.5"} 1.0' in text
    assert 'tgw_receipt_latency_seconds_bucket{bank="ICBC",le="1.0"} 0.0' in text


def test_metrics_show_card_deadlines(
    site: tuple[Resource, Dashboard], hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline watch's counts (issue 5: due and overdue raised in metrics) appear in the exposition."""
    from types import SimpleNamespace

    from gateway.cards import runtime

    counts = {
        "records_APPROVED": 3,
        "fen_APPROVED": 12_345,
        "due": 2,
        "due_fen": 800,
        "overdue": 1,
        "overdue_fen": 500,
        "repay_failures": 4,
    }
    monkeypatch.setattr(runtime, "watch_of", lambda _hub: SimpleNamespace(counts=counts))
    _, dash = site
    dash.metrics.refresh()
    text = dash.metrics.exposition().decode()
    assert 'tgw_card_spending{state="APPROVED"} 3.0' in text
    assert 'tgw_card_deadlines{when="overdue"} 1.0' in text
    assert 'tgw_card_deadlines_fen{when="due"} 800.0' in text
    assert "tgw_card_repay_failures 4.0" in text
