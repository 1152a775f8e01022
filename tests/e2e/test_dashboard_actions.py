"""The dashboard's actions on links and certificates, end to end over real TLS and HTTP (issue 7 §6).

- Revoking a bank's certificate on `/banks` cuts the bank's sessions on that certificate at once, and its reconnect
  (the simulated bank keeps trying) is refused at the handshake.
- Issuing a new certificate on `/banks` takes effect without a restart: a bank holding it signs on and its signed
  messages verify, while the previous certificate keeps working until it is revoked.
- Stopping the gateway ends the dashboard's live streams (server-sent events) and closes their connections.

The dashboard is driven over HTTP with an admin's session made in the store (the sign-in form itself is tested in
tests/gateway/dashboard/).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from cryptography import x509

from certs.pki import load_certificate
from gateway.auth import accounts
from protocols.messages import Ping, Reply, SignOn
from tests.e2e.harness import E2E, WAIT_S, RawBank, direct_voucher, today_cst


def _admin(e2e: E2E) -> tuple[str, str]:
    """An admin operator with a session: (cookie token, CSRF token)."""

    def make(conn: Any) -> tuple[str, str]:
        now = datetime.now(UTC).replace(tzinfo=None)
        operator = accounts.create_operator(conn, "adam", "Adam", "admin", "scrypt$unused", now)
        token, session = accounts.create_session(conn, operator.id, now)
        return token, session.csrf_token

    result: tuple[str, str] = e2e.store(make)
    return result


def _post(e2e: E2E, path: str, token: str, form: dict[str, str]) -> tuple[int, str]:
    """POST a dashboard form as the admin; returns the status and the Location (or body)."""
    assert e2e.gateway is not None
    host, port = e2e.gateway.running.web_address  # type: ignore[misc]
    conn = http.client.HTTPConnection(host, port, timeout=WAIT_S)
    try:
        conn.request(
            "POST",
            path,
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"tgw_session={token}"},
        )
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, response.getheader("location") or body
    finally:
        conn.close()


def _serial(cert_path: Any) -> int:
    cert: x509.Certificate = load_certificate(cert_path)
    return cert.serial_number


def _refused_at_the_handshake(e2e: E2E) -> None:
    """A client with the bank's (revoked) certificate is cut off unanswered: during the handshake (TLS 1.2) or
    right after it (TLS 1.3), before anything it sends is read."""
    try:
        raw = e2e.raw(sign_on=False)
        raw.send(SignOn(bank_code="ICBC", last_work_date=today_cst()))
        answered = raw.wait_closed()
    except (ssl.SSLError, ConnectionError):
        answered = []
    assert answered == [], "the gateway answered a peer with a revoked certificate"


def test_revoking_from_the_dashboard_cuts_the_bank_at_once_and_its_reconnect_is_refused(e2e: E2E) -> None:
    gateway = e2e.start()
    bank = e2e.bank("ICBC")
    (key,) = e2e.submit(direct_voucher("5201450100000701"))
    e2e.wait_state(key, "PAID")  # a working link
    token, csrf = _admin(e2e)
    serial = _serial(e2e.instance.bank_cert("ICBC"))
    connections_before = bank.stats.connections
    revoke_at = len(e2e.events)

    status, where = _post(
        e2e, "/banks/ICBC/revoke", token, {"_csrf": csrf, "serial": format(serial, "x"), "reason": "keyCompromise"}
    )
    assert (status, where) == (303, "/banks?done=revoke"), (status, where)
    # the session is cut at once (not at the bank's next handshake)
    e2e.until(lambda: gateway.hub.sessions["ICBC"] == [], "ICBC's session to be closed")
    # the simulated bank keeps reconnecting; wait until a reconnect has started after a failed one, so at least
    # one whole attempt was made and refused
    e2e.until(lambda: bank.stats.connections >= connections_before + 2, "ICBC to try to reconnect twice")
    links = [d for k, d in e2e.events[revoke_at:] if k == "link" and d["bank"] == "ICBC"]
    assert links and all(d["sessions"] == 0 for d in links), links  # never bound again
    assert e2e.rt.call(lambda: gateway.hub.sessions["ICBC"]) == []
    _refused_at_the_handshake(e2e)

    def audited(conn: Any) -> list[tuple[str, str, dict[str, Any]]]:
        return [(a["actor"], a["action"], a["detail"]) for a in accounts.list_audit(conn)["entries"]]

    trail = e2e.store(audited)
    [close] = [a for a in trail if a[1] == "link.close"]
    assert (
        close[0] == "operator:adam" and close[2]["serial"] == format(serial, "x") and len(close[2]["connections"]) == 1
    )
    [revoke] = [a for a in trail if a[1] == "cert.revoke"]
    assert revoke[2]["sessions_closed"] == close[2]["connections"]


def test_a_certificate_issued_from_the_dashboard_works_without_a_restart(e2e: E2E) -> None:
    gateway = e2e.start()
    # a link of the bank's systems still on the current certificate: TLS up, key in memory, not signed on yet
    # (so that the gateway sends the vouchers below to the simulated bank, not to it)
    old_link = e2e.raw(sign_on=False)
    old_serial = _serial(e2e.instance.bank_cert("ICBC"))
    token, csrf = _admin(e2e)

    status, where = _post(e2e, "/banks/ICBC/issue", token, {"_csrf": csrf})
    assert (status, where) == (303, "/banks?done=issue"), (status, where)
    new_serial = _serial(e2e.instance.bank_cert("ICBC"))
    assert new_serial != old_serial
    # a simulated bank holding the new certificate signs on, and its receipt (signed with the new key) verifies
    e2e.bank("ICBC")
    (key,) = e2e.submit(direct_voucher("5201450100000702"))
    found = e2e.wait_state(key, "PAID")
    assert found["timeline"][-1]["actor"] == "bank:ICBC" and found["chain_ok"]
    # the previous certificate still works until it is revoked: its sign-on and ping verify
    old_link.sign_on()
    pong = old_link.request(Ping())
    assert isinstance(pong.body, Reply) and pong.body.result == 90000

    status, _ = _post(
        e2e, "/banks/ICBC/revoke", token, {"_csrf": csrf, "serial": format(old_serial, "x"), "reason": "superseded"}
    )
    assert status == 303
    assert old_link.wait_closed() == [], "the link on the revoked certificate must be cut, unanswered"
    # the simulated bank's link (new certificate) is untouched and keeps paying
    (second,) = e2e.submit(direct_voucher("5201450100000703"))
    e2e.wait_state(second, "PAID")
    assert e2e.rt.call(lambda: len(gateway.hub.sessions["ICBC"])) == 1
    fresh = e2e.raw()  # and a new link with the new certificate is accepted
    assert isinstance(fresh.request(Ping()).body, Reply)


def _open_stream(host: str, port: int, token: str) -> socket.socket:
    """GET /events as a browser does, and read up to the stream's first line (`retry:`)."""
    sock = socket.create_connection((host, port), timeout=WAIT_S)
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        f"Cookie: tgw_session={token}\r\n\r\n".encode()
    )
    seen = b""
    while b"retry:" not in seen:
        chunk = sock.recv(4096)
        assert chunk, f"the stream ended before it began: {seen!r}"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200") and b"text/event-stream" in seen, seen
    return sock


def _read_to_the_end(sock: socket.socket) -> bytes:
    """What comes until the gateway closes the connection; fails if it is still open after WAIT_S (a stream left
    open keeps sending heartbeats, so a read timeout alone would never come)."""
    deadline = time.monotonic() + WAIT_S
    rest = b""
    while chunk := sock.recv(4096):
        rest += chunk
        assert time.monotonic() < deadline, f"the stream is still open {WAIT_S:g} s after the gateway stopped"
    return rest


def test_stopping_the_gateway_ends_the_live_streams(e2e: E2E) -> None:
    gateway = e2e.start()
    token, _ = _admin(e2e)
    host, port = gateway.running.web_address  # type: ignore[misc]
    streams = [_open_stream(host, port, token) for _ in range(2)]
    e2e.until(lambda: len(gateway.running.web_root.dashboard.live.streams) == 2, "two live streams")

    e2e.stop_gateway()  # Running.stop, on the reactor; returns once it has stopped
    for sock in streams:
        rest = _read_to_the_end(sock)
        assert rest.endswith(b"0\r\n\r\n"), rest  # the chunked response was finished, not just dropped
        sock.close()
    assert not gateway.running.web_root.dashboard.live.streams


_ = RawBank
