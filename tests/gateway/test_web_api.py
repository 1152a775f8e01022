"""The finance-side HTTP API, rendered with twisted.web's DummyRequest through the gateway's resource tree, on a
hub whose store is the test database (synchronous) — no sockets, no reactor."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from twisted.web.resource import getChildForRequest
from twisted.web.test._util import _render
from twisted.web.test.requesthelper import DummyRequest

from gateway import web
from gateway.dbthread import InlineDatabase
from gateway.hub import Hub
from gateway.store import repo
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import archive, vouchers
from protocols import codec, jsonform, samples
from protocols.messages import Voucher
from tests.gateway.conftest import TOKEN, Link, emptied, voucher_state


@pytest.fixture
def pg_db_engine(pg_engine: Engine) -> Engine:
    """The session's PostgreSQL database, emptied quickly for this module (see tests.gateway.conftest.emptied)."""
    return emptied(pg_engine)


V1 = samples.direct_voucher()
V2 = samples.direct_voucher("5201450100000124", (1_000,))


class Response:
    def __init__(self, request: DummyRequest) -> None:
        assert request.finished, "the API left the request unfinished"
        self.code: int = request.responseCode or 200
        self.body = b"".join(request.written)
        self.content_type = (request.responseHeaders.getRawHeaders(b"content-type") or [b""])[0]
        self.headers = request.responseHeaders

    def json(self) -> Any:
        assert self.content_type.startswith(b"application/json"), self.content_type
        return json.loads(self.body)


def call(
    hub: Hub,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    args: dict[str, str] | None = None,
) -> Response:
    """Render `METHOD /path` through the gateway's resource tree."""
    segments = [s.encode() for s in path.strip("/").split("/")]
    request = DummyRequest(segments)
    request.method = method.encode()
    request.uri = path.encode()
    data = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, dict) else (body or b"")
    request.content = BytesIO(data)
    if token is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
    request.args = {k.encode(): [v.encode()] for k, v in (args or {}).items()}
    resource = getChildForRequest(web.build_root(hub), request)
    _render(resource, request)
    return Response(request)


def submission(*items: Voucher, bank: str = "ICBC") -> dict[str, Any]:
    return {"vouchers": [{"bank": bank, "voucher": jsonform.to_json(v)} for v in items]}


def count(engine: Engine, table: Any) -> int:
    with transaction(engine, read_only=True) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- authorization ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", "", TOKEN + "x", TOKEN[:-1]], ids=repr)
def test_the_api_needs_the_token(hub: Hub, db_engine: Engine, token: str | None) -> None:
    """Without the exact bearer token: 401, and nothing is done."""
    response = call(hub, "POST", "/api/vouchers", submission(V1), token=token)
    assert response.code == 401 and response.json()["error"] == "unauthorized"
    assert count(db_engine, vouchers) == 0


def test_the_token_must_be_a_bearer_token(hub: Hub) -> None:
    response = call(hub, "GET", "/api/vouchers", token=None, headers={"Authorization": TOKEN})
    assert response.code == 401


def test_health_needs_no_token(hub: Hub) -> None:
    response = call(hub, "GET", "/healthz", token=None)
    assert (response.code, response.json()) == (200, {"status": "ok"})


# --- submit -----------------------------------------------------------------------------------------------------------


def test_submit_accepts_and_records(hub: Hub, db_engine: Engine) -> None:
    response = call(hub, "POST", "/api/vouchers", submission(V1, V2), headers={"X-Actor": "alice"})
    assert response.code == 201
    assert response.json() == {"accepted": [{"key": str(V1.key), "bank": "ICBC"}, {"key": str(V2.key), "bank": "ICBC"}]}
    assert voucher_state(db_engine, V1.key) == voucher_state(db_engine, V2.key) == "ACCEPTED"
    timeline = call(hub, "GET", f"/api/vouchers/{V1.key}").json()["timeline"]
    assert [(e["event"], e["actor"]) for e in timeline] == [("submitted", "api:alice")]


def test_submit_announces_the_new_vouchers(hub: Hub) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    hub.listeners.append(lambda kind, data: events.append((kind, data)))
    call(hub, "POST", "/api/vouchers", submission(V1))
    assert events == [("voucher", {"key": str(V1.key), "bank": "ICBC", "state": "ACCEPTED"})]


def test_a_voucher_submitted_while_its_bank_is_signed_on_goes_out_at_once(
    hub: Hub, link: Link, db_engine: Engine
) -> None:
    link.sign_on()
    call(hub, "POST", "/api/vouchers", submission(V1))
    assert [(m.head.msg_no, m.body) for m in link.received()] == [("5201", V1)]
    assert voucher_state(db_engine, V1.key) == "SENT"


def test_submit_xml_with_the_bank_in_the_query(hub: Hub, db_engine: Engine) -> None:
    document = codec.encode(samples.message(V1, "gateway"))
    response = call(
        hub, "POST", "/api/vouchers", document, headers={"Content-Type": "application/xml"}, args={"bank": "CCB"}
    )
    assert response.code == 201
    assert response.json()["accepted"] == [{"key": str(V1.key), "bank": "ICBC"}]  # Head/Des names ICBC


def test_submit_names_every_problem(hub: Hub, db_engine: Engine) -> None:
    bad = jsonform.to_json(V1)
    bad["PayAmt"] = "1.5"
    response = call(hub, "POST", "/api/vouchers", {"vouchers": [{"bank": "ICBC", "voucher": bad}, {"bank": "BOC"}]})
    assert response.code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert {p["field"] for p in body["problems"]} >= {"vouchers[1]/PayAmt", "vouchers[2]"}
    assert count(db_engine, vouchers) == 0


def test_submit_refuses_an_unknown_bank_and_a_duplicate(hub: Hub, db_engine: Engine) -> None:
    assert call(hub, "POST", "/api/vouchers", submission(V1)).code == 201
    response = call(hub, "POST", "/api/vouchers", submission(V1, V2, bank="ICBC"))
    assert response.code == 400
    assert [p["field"] for p in response.json()["problems"]] == ["vouchers[1]/VoucherNo"]
    response = call(hub, "POST", "/api/vouchers", submission(V2, bank="BOC"))
    assert [p["field"] for p in response.json()["problems"]] == ["vouchers[1]/bank"]
    assert count(db_engine, vouchers) == 1


@pytest.mark.parametrize("body", [b"", b"{not json", b"<Nothing/>"], ids=["empty", "broken-json", "no-voucher"])
def test_an_unreadable_submission_is_400_with_a_message(hub: Hub, body: bytes) -> None:
    response = call(hub, "POST", "/api/vouchers", body)
    assert response.code == 400
    assert response.json()["error"] == "invalid" and response.json()["message"]


def test_a_body_at_the_cap_is_read_and_one_byte_more_is_refused(hub: Hub, db_engine: Engine) -> None:
    """MAX_BODY_BYTES of request body are accepted; MAX_BODY_BYTES + 1 are refused without being processed."""
    document = json.dumps(submission(V1)).encode()
    padded = document + b" " * (web.MAX_BODY_BYTES - len(document))
    assert len(padded) == web.MAX_BODY_BYTES
    too_big = padded.replace(V1.voucher_no.encode(), V2.voucher_no.encode()) + b" "
    response = call(hub, "POST", "/api/vouchers", too_big)
    assert response.code == 413
    assert str(web.MAX_BODY_BYTES) in response.json()["message"]
    assert count(db_engine, vouchers) == 0
    assert call(hub, "POST", "/api/vouchers", padded).code == 201


def test_an_overlong_actor_is_not_an_internal_error(hub: Hub, db_engine: Engine) -> None:
    """X-Actor is free text from the client: a long one is cut or refused, never a 500 (the same on both stores)."""
    response = call(hub, "POST", "/api/vouchers", submission(V1), headers={"X-Actor": "a" * 300})
    assert response.code in (201, 400)


@pytest.mark.parametrize(
    "actor", ["a" * 49, "", "alice bob", "李明", "x\ty"], ids=["long", "empty", "space", "cjk", "tab"]
)
def test_an_actor_that_is_not_a_short_plain_name_is_400_and_nothing_is_recorded(
    hub: Hub, db_engine: Engine, actor: str
) -> None:
    response = call(hub, "POST", "/api/vouchers", submission(V1), headers={"X-Actor": actor})
    assert response.code == 400 and "X-Actor" in response.json()["message"]
    assert count(db_engine, vouchers) == 0


def test_the_actor_is_recorded_as_the_submitter(hub: Hub, db_engine: Engine) -> None:
    actor = "feeder-01@finance.gx"
    assert call(hub, "POST", "/api/vouchers", submission(V1), headers={"X-Actor": actor}).code == 201
    with transaction(db_engine, read_only=True) as conn:
        record = repo.get_voucher_by_key(conn, V1.key)
    assert record is not None and record.submitted_by == f"api:{actor}"


# --- list and get -----------------------------------------------------------------------------------------------------


def test_list_filters_and_pages(hub: Hub) -> None:
    call(hub, "POST", "/api/vouchers", submission(V1, V2))
    call(hub, "POST", "/api/vouchers", submission(samples.direct_voucher("5201450100000999", (500,)), bank="CCB"))
    everything = call(hub, "GET", "/api/vouchers").json()
    assert everything["total"] == 3 and len(everything["vouchers"]) == 3
    assert everything["vouchers"][0]["voucher_no"] == "5201450100000999"  # newest first
    ccb = call(hub, "GET", "/api/vouchers", args={"bank": "CCB"}).json()
    assert [v["bank"] for v in ccb["vouchers"]] == ["CCB"]
    big = call(hub, "GET", "/api/vouchers", args={"min_fen": "100000"}).json()
    assert [v["key"] for v in big["vouchers"]] == [str(V1.key)]
    assert call(hub, "GET", "/api/vouchers", args={"state": "PAID"}).json()["total"] == 0
    page = call(hub, "GET", "/api/vouchers", args={"limit": "1", "offset": "1"}).json()
    assert (page["total"], len(page["vouchers"]), page["offset"]) == (3, 1, 1)
    entry = everything["vouchers"][-1]
    assert (entry["amount_fen"], entry["amount"], entry["state"]) == (V1.pay_amt_fen, "125000.00", "ACCEPTED")


def test_a_bad_filter_is_400(hub: Hub) -> None:
    response = call(hub, "GET", "/api/vouchers", args={"min_fen": "lots"})
    assert response.code == 400 and "lots" in response.json()["message"]


@pytest.mark.parametrize("name", ["offset", "limit"])
def test_a_negative_offset_or_limit_is_400(hub: Hub, name: str) -> None:
    """Not a 500 from PostgreSQL ('OFFSET must not be negative'), not silently ignored as on SQLite."""
    response = call(hub, "GET", "/api/vouchers", args={name: "-1"})
    assert response.code == 400 and name in response.json()["message"]


def test_get_one_voucher_with_its_timeline_and_messages(hub: Hub, link: Link) -> None:
    link.sign_on()
    call(hub, "POST", "/api/vouchers", submission(V1))
    body = call(hub, "GET", f"/api/vouchers/{V1.key}").json()
    assert body["key"] == str(V1.key) and body["state"] == "SENT"
    assert body["voucher"] == jsonform.to_json(V1)
    assert [e["event"] for e in body["timeline"]] == ["submitted", "dispatch"]
    assert [(m["direction"], m["msg_no"]) for m in body["messages"]] == [("out", "5201")]


def test_an_archived_message_comes_back_byte_for_byte(hub: Hub, link: Link, db_engine: Engine) -> None:
    link.sign_on()
    call(hub, "POST", "/api/vouchers", submission(V1))
    with transaction(db_engine, read_only=True) as conn:
        row = conn.execute(select(archive).where(archive.c.msg_no == "5201")).mappings().one()
    response = call(hub, "GET", f"/api/archive/{row['id']}")
    assert response.code == 200 and response.body == bytes(row["raw"])


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", f"/api/vouchers/{V1.key}", 404),
        ("GET", "/api/archive/999999", 404),
        ("GET", "/api/nothing", 404),
        ("DELETE", "/api/vouchers", 404),
        ("GET", "/api/vouchers/not-a-key", 400),
        ("GET", "/api/archive/abc", 400),
    ],
)
def test_what_is_not_there(hub: Hub, method: str, path: str, code: int) -> None:
    response = call(hub, method, path)
    assert response.code == code
    assert response.json()["error"] == ("not_found" if code == 404 else "invalid")


# --- cancel -----------------------------------------------------------------------------------------------------------


def test_cancel_before_sending(hub: Hub, db_engine: Engine) -> None:
    call(hub, "POST", "/api/vouchers", submission(V1))
    response = call(hub, "POST", f"/api/vouchers/{V1.key}/cancel", {"reason": "wrong payee"})
    assert (response.code, response.json()) == (200, {"key": str(V1.key), "state": "CANCELLED"})
    assert voucher_state(db_engine, V1.key) == "CANCELLED"
    timeline = call(hub, "GET", f"/api/vouchers/{V1.key}").json()["timeline"]
    assert timeline[-1]["detail"] == {"reason": "wrong payee"}


def test_cancel_after_sending_is_409(hub: Hub, link: Link, db_engine: Engine) -> None:
    link.sign_on()
    call(hub, "POST", "/api/vouchers", submission(V1))
    response = call(hub, "POST", f"/api/vouchers/{V1.key}/cancel")
    assert response.code == 409 and response.json()["error"] == "refused"
    assert voucher_state(db_engine, V1.key) == "SENT"


def test_cancel_of_an_unknown_voucher_is_refused(hub: Hub) -> None:
    response = call(hub, "POST", f"/api/vouchers/{V1.key}/cancel")
    assert response.code == 409 and str(V1.key) in response.json()["message"]


# --- quota notices, banks, store outage -------------------------------------------------------------------------------


def test_quota_notice_grants_once(hub: Hub) -> None:
    notice = {"bank": "ICBC", "notice": jsonform.to_json(samples.quota_notice())}
    first = call(hub, "POST", "/api/quota-notices", notice)
    assert first.code == 201 and first.json()["msg_id"]
    again = call(hub, "POST", "/api/quota-notices", notice)
    assert again.code == 400
    assert [p["field"] for p in again.json()["problems"]] == ["QuotaNotice/VoucherNo"]


def test_quota_notice_for_an_unknown_bank_is_400(hub: Hub) -> None:
    notice = {"bank": "BOC", "notice": jsonform.to_json(samples.quota_notice())}
    response = call(hub, "POST", "/api/quota-notices", notice)
    assert response.code == 400 and "BOC" in response.json()["message"]


def test_banks_and_their_sessions(hub: Hub, link: Link) -> None:
    before = {b["code"]: b for b in call(hub, "GET", "/api/banks").json()["banks"]}
    assert set(before) == {"ICBC", "CCB"}
    assert (before["ICBC"]["sessions"], before["ICBC"]["signed_on"]) == (1, 0)
    link.sign_on()
    after = {b["code"]: b for b in call(hub, "GET", "/api/banks").json()["banks"]}
    assert (after["ICBC"]["signed_on"], after["CCB"]["sessions"]) == (1, 0)


def test_a_store_outage_is_503(hub: Hub) -> None:
    hub.db = InlineDatabase(create_engine_for("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=2))
    response = call(hub, "GET", "/api/vouchers")
    assert response.code == 503 and response.json()["error"] == "internal"
    assert call(hub, "POST", "/api/vouchers", submission(V1)).code == 503
