"""`/api/cards/…` through the gateway's resource tree (twisted.web's DummyRequest, a hub on the test database),
and the `tgw cards` reads on the store: the rules answered as HTTP, card numbers masked in every answer."""

from __future__ import annotations

import contextlib
import io
import json
from io import BytesIO
from pathlib import Path
from typing import Any

from sqlalchemy import select
from twisted.web.resource import getChildForRequest
from twisted.web.test._util import _render
from twisted.web.test.requesthelper import DummyRequest

from gateway import cli, web
from gateway.config import Config
from gateway.hub import Hub
from gateway.store.tables import outbox
from tests.cards.conftest import EDUCATION, HEALTH, TOKEN, Cards, card_number


class Response:
    def __init__(self, request: DummyRequest) -> None:
        assert request.finished, "the API left the request unfinished"
        self.code: int = request.responseCode or 200
        self.text = b"".join(request.written).decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.text)


def call(hub: Hub, method: str, path: str, body: dict[str, Any] | None = None, **args: str) -> Response:
    request = DummyRequest([s.encode() for s in path.strip("/").split("/")])
    request.method = method.encode()
    request.uri = path.encode()
    request.content = BytesIO(json.dumps(body or {}, ensure_ascii=False).encode())
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {TOKEN}".encode()])
    request.requestHeaders.setRawHeaders(b"x-actor", [b"alice"])
    request.args = {k.encode(): [v.encode()] for k, v in args.items()}
    _render(getChildForRequest(web.build_root(hub), request), request)
    return Response(request)


def _cycle_ready(signed: Cards) -> list[Any]:
    signed.grant(HEALTH, 1_000_000)
    records = [signed.spend(card=1), signed.spend(card=1, amount_fen=42_800), signed.spend(agency=EDUCATION, card=2)]
    signed.push("ICBC", records)
    return records


def test_list_and_show_mask_the_card(hub: Hub, signed: Cards) -> None:
    a, b, _ = _cycle_ready(signed)
    listed = call(hub, "GET", "/api/cards", agency=HEALTH)
    assert listed.code == 200
    assert [r["spend_id"] for r in listed.json()["records"]] == [a.spend_id, b.spend_id]
    assert listed.json()["records"][0]["card"] == "628288*********0001"
    assert listed.json()["records"][0]["days_left"] == (a.limit_date - signed.today).days
    shown = call(hub, "GET", f"/api/cards/ICBC:{a.spend_id}")
    assert shown.code == 200 and [e["event"] for e in shown.json()["events"]] == ["received"]
    for response in (listed, shown):
        assert card_number(1) not in response.text
    assert call(hub, "GET", "/api/cards/ICBC:NOPE").code == 404
    assert call(hub, "GET", "/api/cards/no-colon").code == 400
    assert call(hub, "GET", "/api/cards", state="SOMETHING").code == 400


def test_review_through_the_api_answers_the_rules(hub: Hub, signed: Cards) -> None:
    a, b, e = _cycle_ready(signed)
    refs = [f"ICBC:{a.spend_id}", f"ICBC:{b.spend_id}"]
    other = call(hub, "POST", "/api/cards/approve", {"agency": HEALTH, "refs": [*refs, f"ICBC:{e.spend_id}"]})
    assert other.code == 400 and [p["field"] for p in other.json()["problems"]] == [f"ICBC:{e.spend_id}"]
    approved = call(hub, "POST", "/api/cards/approve", {"agency": HEALTH, "refs": refs})
    assert (approved.code, approved.json()) == (200, {"state": "APPROVED", "refs": refs})
    assert signed.record(a)["reviewed_by"] == "api:alice"
    twice = call(hub, "POST", "/api/cards/approve", {"agency": HEALTH, "refs": refs[:1]})
    assert twice.code == 400 and "already reviewed" in twice.text
    no_reason = call(hub, "POST", "/api/cards/reject", {"agency": EDUCATION, "refs": [f"ICBC:{e.spend_id}"]})
    assert no_reason.code == 400
    rejected = call(
        hub, "POST", "/api/cards/reject", {"agency": EDUCATION, "refs": [f"ICBC:{e.spend_id}"], "reason": "个人消费"}
    )
    assert rejected.code == 200 and signed.record(e)["state"] == "REJECTED"
    assert call(hub, "POST", "/api/cards/approve", {"refs": refs}).code == 400  # no agency
    assert call(hub, "POST", "/api/cards/approve", {"agency": HEALTH, "refs": "ICBC:x"}).code == 400


def test_repay_through_the_api_queues_vouchers_and_hides_the_card_everywhere(hub: Hub, signed: Cards) -> None:
    """The hub's archive reader verifies the bank's signed 7101 to read the card number back; the voucher, queued
    for the bank with the full number, shows only the masked one through both APIs."""
    a, b, _ = _cycle_ready(signed)
    seen: list[tuple[str, dict[str, Any]]] = []
    hub.listeners.append(lambda kind, data: seen.append((kind, data)))
    call(hub, "POST", "/api/cards/approve", {"agency": HEALTH, "refs": [f"ICBC:{a.spend_id}", f"ICBC:{b.spend_id}"]})
    repaid = call(hub, "POST", "/api/cards/repay", {"agency": HEALTH})
    assert repaid.code == 201, repaid.text
    (voucher,) = repaid.json()["vouchers"]
    assert (voucher["records"], voucher["amount_fen"], voucher["card"]) == (
        2,
        a.amt_fen + b.amt_fen,
        "628288*********0001",
    )
    assert repaid.json()["skipped"] == []
    assert ("voucher", {"key": voucher["key"], "bank": "ICBC", "state": "ACCEPTED"}) in seen
    queued = signed.tx(
        lambda conn: conn.execute(select(outbox.c.document).where(outbox.c.msg_no == "8202")).scalar_one()
    )
    assert card_number(1) in queued  # what goes to the bank carries the number
    full = signed.voucher(voucher["key"])
    assert full.payee_acct_bank_name == "中国工商银行" and full.details[0].card_no == card_number(1)
    for response in (
        repaid,
        call(hub, "GET", f"/api/vouchers/{voucher['key']}"),
        call(hub, "GET", "/api/vouchers"),
        call(hub, "GET", "/api/cards", state="all"),
    ):
        assert response.code == 200 or response.code == 201
        assert card_number(1) not in response.text
    shown = call(hub, "GET", f"/api/vouchers/{voucher['key']}").json()
    assert shown["payee_acct_no"] == "628288*********0001"
    assert {d["CardNo"] for d in shown["voucher"]["DetailList"]} == {"628288*********0001"}


def test_due_and_summary(hub: Hub, signed: Cards) -> None:
    _cycle_ready(signed)
    due = call(hub, "GET", "/api/cards/due", lead_days="40")
    assert due.code == 200 and due.json()["counts"]["due"] == 3 and due.json()["lead_days"] == 40
    assert call(hub, "GET", "/api/cards/due").json()["counts"]["due"] == 0  # [cards] due_lead_days = 5
    assert call(hub, "GET", "/api/cards/due", lead_days="-1").code == 400
    summary = call(hub, "GET", "/api/cards/summary").json()
    assert summary["counts"]["records_RECEIVED"] == 3 and summary["lead_days"] == 5
    assert call(hub, "GET", "/api/cards/nothing/here").code == 404


# --- the command line's reads ----------------------------------------------------------------------------------


def tgw(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_list_show_and_due_read_the_store_and_mask_the_card(instance: Config, signed: Cards) -> None:
    a, b, _ = _cycle_ready(signed)
    config = str(instance.path)
    code, out, err = tgw("cards", "list", "--config", config, "--agency", HEALTH, "--today", "20261123")
    assert code == 0 and a.spend_id in out and b.spend_id in out and "628288*********0001" in out
    assert "2 of 2 record(s)" in err
    code, out, _ = tgw("cards", "list", "--config", config, "--json")
    assert code == 0 and json.loads(out)["total"] == 3
    code, out, _ = tgw("cards", "show", "--config", config, f"ICBC:{a.spend_id}")
    assert code == 0 and "received" in out
    assert tgw("cards", "show", "--config", config, "ICBC:NOPE")[0] == 1
    code, out, _ = tgw("cards", "due", "--config", config, "--today", "20261224")
    assert code == 0 and "OVERDUE" in out and a.spend_id in out
    code, out, _ = tgw("cards", "due", "--config", config, "--lead-days", "40", "--json", "--today", "20261123")
    assert json.loads(out)["counts"]["due"] == 3
    everything = "".join(
        tgw("cards", cmd, "--config", config, *extra)[1]
        for cmd, extra in (("list", ["--json"]), ("due", ["--json", "--lead-days", "90"]))
    )
    assert card_number(1) not in everything and card_number(2) not in everything
    assert tgw("cards", "list", "--config", config, "--state", "BAD")[0] == 2


def test_cli_writes_need_the_running_gateway(instance: Config, tmp_path: Path) -> None:
    (instance.directory / "run.json").write_text(
        json.dumps({"pid": 1, "bank": ["127.0.0.1", 1], "web": ["127.0.0.1", 1]})
    )
    code, _, err = tgw("cards", "approve", "--config", str(instance.path), "--agency", HEALTH, "ICBC:X")
    assert code == 2 and "not reachable" in err


def test_an_overlong_actor_is_cut_to_the_historys_column(hub: Hub, signed: Cards) -> None:
    a, _, _ = _cycle_ready(signed)
    request_body = {"agency": HEALTH, "refs": [f"ICBC:{a.spend_id}"]}
    long_name = "x" * 300
    request = DummyRequest([b"api", b"cards", b"approve"])
    request.method = b"POST"
    request.content = BytesIO(json.dumps(request_body).encode())
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {TOKEN}".encode()])
    request.requestHeaders.setRawHeaders(b"x-actor", [long_name.encode()])
    _render(getChildForRequest(web.build_root(hub), request), request)
    assert Response(request).code == 200
    assert signed.record(a)["reviewed_by"] == f"api:{long_name}"[:64]
