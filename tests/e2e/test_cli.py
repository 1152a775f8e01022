"""The gateway as an operator runs it: `tgw run` in a process of its own, `tgw submit/vouchers/voucher`, the HTTP API.

The simulated bank runs in the test process and connects to the `tgw run` process at the port it wrote into
`DIR/run.json`; the commands are run as a user would run them, each in a subprocess.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from lxml import etree

from gateway.payments import queries
from protocols import codec, jsonform, samples
from protocols.messages import VoucherKey
from tests.e2e.harness import E2E, direct_voucher, run_tgw


def _http(url: str, token: str | None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _all_paid(keys: list[VoucherKey]) -> Any:
    def check(conn: Any) -> Any:
        found = [queries.get_voucher(conn, key) for key in keys]
        return all(f is not None and f["state"] == "PAID" for f in found)

    return check


def test_tgw_run_submit_list_show_and_the_http_api_then_sigterm_stops_cleanly(e2e: E2E) -> None:
    """Vouchers submitted by `tgw submit` (JSON, XML) and the API get PAID; the CLI and API show it; SIGTERM exits 0."""
    gateway = e2e.run_process()
    bank = e2e.bank(address=gateway.bank_address)
    config = str(e2e.instance.config_path)
    work = e2e.instance.directory / "work"
    work.mkdir()

    by_json, by_xml, by_api = (direct_voucher(f"52014501000003{n:02d}") for n in (1, 2, 3))
    json_file = work / "voucher.json"
    json_file.write_text(json.dumps({"bank": "ICBC", "voucher": jsonform.to_json(by_json)}), encoding="utf-8")
    xml_file = work / "voucher.xml"
    element = codec.to_tree(samples.message(by_xml, "gateway")).find("Body/Voucher")
    assert element is not None
    xml_file.write_bytes(etree.tostring(element, xml_declaration=True, encoding="UTF-8"))
    for path, voucher in ((json_file, by_json), (xml_file, by_xml)):
        done = run_tgw("submit", "--config", config, path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str(voucher.key)], done.stdout
    again = run_tgw("submit", "--config", config, json_file)
    assert again.returncode == 1 and "already submitted" in again.stderr, (again.returncode, again.stderr)

    host, port = gateway.web_address
    token = e2e.instance.config().api_token
    api = f"http://{host}:{port}/api"
    status, answer = _http(f"{api}/vouchers", token, {"bank": "ICBC", "voucher": jsonform.to_json(by_api)})
    assert (status, answer["accepted"]) == (201, [{"key": str(by_api.key), "bank": "ICBC"}])
    assert _http(f"{api}/vouchers", None)[0] == 401
    assert _http(f"{api}/vouchers", token + "x")[0] == 401
    assert _http(f"{api}/vouchers", None, {"bank": "ICBC", "voucher": {}})[0] == 401

    keys = [by_json.key, by_xml.key, by_api.key]
    e2e.until_store(_all_paid(keys), what="the three vouchers to be paid")

    listed = run_tgw("vouchers", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["total"] == 3
    outcomes = {str(o.key): o for o in bank.ledger.outcomes()}
    for entry in page["vouchers"]:
        outcome = outcomes[entry["key"]]
        assert (entry["state"], entry["bank"], entry["amount_fen"]) == ("PAID", "ICBC", outcome.requested_fen)
        assert (entry["x_agent_business_no"], entry["x_pay_date"]) == (outcome.serial, outcome.pay_date.isoformat())
    shown = run_tgw("voucher", "--config", config, str(by_xml.key), "--json")
    assert shown.returncode == 0, shown.stderr
    one = json.loads(shown.stdout)
    assert one["state"] == "PAID" and one["voucher"] == jsonform.to_json(by_xml)
    assert [t["to"] for t in one["timeline"]] == ["ACCEPTED", "SENT", "DELIVERED", "PAID"]
    status, via_api = _http(f"{api}/vouchers/{by_json.key}", token)
    assert (status, via_api["state"]) == (200, "PAID")
    assert [t["to"] for t in via_api["timeline"]] == ["ACCEPTED", "SENT", "DELIVERED", "PAID"]

    assert gateway.terminate() == 0, gateway.output
    assert not (e2e.instance.directory / "run.json").exists()
    assert "Traceback" not in gateway.output, gateway.output
