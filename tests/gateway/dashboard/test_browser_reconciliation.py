"""The reconciliation pages in a real browser (Debian's headless Chromium through chromedriver): the four-eyes
resolution of a break, end to end.

A gateway (`app.start`, which attaches the store's reconciliation provider) and a simulated ICBC run on loopback
over mutual TLS, as in `test_browser.py` (its fixtures, a gateway of this module's own). The simulated bank pays
three vouchers; the test then reconciles the day with `run_day` against a statement that leaves one payment out
and says another failed, so the night does not balance. In the browser: the overview's tile says 不平 and links to
the run; an operator proposes to record a voucher FAILED, the same operator's approval is refused (role); an
approver approves and the voucher's state changes. An approver who proposes is refused approving their own
proposal (four eyes, the provider's message shown) and nothing changes until someone else approves. Screenshots go
to `test-artifacts/dashboard/` (`20-…` onwards). Every wait is an explicit wait on a condition.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from gateway.auth import accounts
from gateway.reconcile.store_port import StoreLedger, run_day
from gateway.store.db import create_engine_for
from protocols.messages import StatementDetail
from reconciliation.formats import STANDARD_TEXT
from reconciliation.ports import TempFileScratch
from reconciliation.readers import read_text
from tests.gateway.dashboard.test_browser import Gateway, _shot, _sign_in, _wait, _wait_for
from tests.gateway.dashboard.test_browser import browser as browser
from tests.gateway.dashboard.test_browser import gateway as gateway
from tests.reconcile.helpers import write_text

BANK = "ICBC"


def _statement(gw: Gateway, day: date, *, left_out: str, failed: str) -> list[StatementDetail]:
    """The bank's statement of `day`: the gateway's ledger, but `left_out` missing and `failed` said failed."""
    engine = create_engine_for(gw.config.database_url)
    try:
        entries = list(StoreLedger(engine).entries(BANK, day))
    finally:
        engine.dispose()
    lines = [
        StatementDetail(
            vt_code=e.vt_code,
            voucher_no=e.voucher_no,
            x_agent_business_no=e.serial,
            x_pay_date=e.pay_date,
            amt_fen=e.amount_fen,
            pro_state=int(e.status),
            payee_acct_no=e.payee_acct_no,
        )
        for e in entries
        if e.voucher_no != left_out
    ]
    assert len(lines) == len(entries) - 1, "the voucher left out is in the ledger"
    return [replace(x, pro_state=2) if x.voucher_no == failed else x for x in lines]


@pytest.fixture(scope="module")
def night(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three vouchers paid by the simulated bank, reconciled against a statement with two breaks."""
    keys = [gateway.submit(BANK, f"RECN000{n}") for n in (1, 2, 3)]
    for key in keys:
        _wait_for(lambda key=key: gateway.state(key) == "PAID", f"{key} to be paid")
    from gateway.payments import queries
    from protocols.messages import VoucherKey

    found = [gateway.store(queries.get_voucher, VoucherKey.parse(k)) for k in keys]
    day = date.fromisoformat(found[0]["x_pay_date"])
    assert {f["x_pay_date"] for f in found} == {day.isoformat()}
    directory = tmp_path_factory.mktemp("recon-statement")
    lines = _statement(gateway, day, left_out=found[0]["voucher_no"], failed=found[1]["voucher_no"])
    path = write_text(directory / "statement.txt", lines, day=day)
    engine = create_engine_for(gateway.config.database_url)
    try:
        done = run_day(
            engine,
            BANK,
            day,
            read_text(str(path), STANDARD_TEXT),
            scratch=TempFileScratch(str(directory)),
            now=datetime.now(UTC).replace(tzinfo=None),
        )
    finally:
        engine.dispose()
    assert len(done.result.breaks) == 2
    return {"keys": keys, "day": day, "run_id": done.run_id}


def _break_link(browser: Any, voucher_no: str) -> None:
    """On a run's page, open the break of the voucher numbered `voucher_no`."""
    from selenium.webdriver.common.by import By

    for row in browser.find_elements(By.CSS_SELECTOR, "table.breaks tbody tr"):
        if voucher_no in row.text:
            row.find_element(By.CSS_SELECTOR, "a.break-link").click()
            return
    raise AssertionError(f"no break of {voucher_no} on the page")


def _propose(browser: Any, reason: str, note: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "resolution")).select_by_value(reason)
    browser.find_element(By.ID, "resolution-note").send_keys(note)
    browser.find_element(By.ID, "propose-button").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice.ok"), "已提交"))
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, '#resolution-state [data-rs="PROPOSED"]')))


def test_an_operator_proposes_and_an_approver_approves(gateway: Gateway, browser: Any, night: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    key = night["keys"][0]  # missing at the bank
    voucher_no = key.rsplit("-", 1)[1]
    _sign_in(browser, gateway, "otto")
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, '#recon-last [data-balanced="0"]')))
    tile = browser.find_element(By.ID, "recon-last")
    assert "不平" in tile.text and "ICBC" in tile.text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", tile)
    _shot(browser, "20-overview-reconciliation-tile")
    # the live feed swaps the tile's content when its first summary arrives: read the link in one step, follow it
    link = browser.execute_script("return document.querySelector('#recon-last a.run-link').href")
    assert link == f"{gateway.url}/reconciliation/{night['run_id']}"
    browser.get(f"{gateway.url}/reconciliation?date={night['day'].isoformat()}")  # the runs of that date
    _wait(browser).until(ec.presence_of_element_located((By.ID, f"run-{night['run_id']}")))
    runs = browser.find_element(By.CSS_SELECTOR, "table.runs").text
    assert "ICBC" in runs and "不平" in runs and "平台单边" in runs and "状态不符" in runs and "未发送" in runs
    _shot(browser, "20b-reconciliation-runs")
    browser.get(link)
    _wait(browser).until(ec.presence_of_element_located((By.ID, "run-summary")))
    assert browser.current_url.endswith(f"/reconciliation/{night['run_id']}")
    assert browser.find_element(By.ID, "break-count").text == "2"
    _shot(browser, "21-reconciliation-run")

    _break_link(browser, voucher_no)
    _wait(browser).until(ec.presence_of_element_located((By.ID, "propose-form")))
    assert "平台单边" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "无此记录" in browser.find_element(By.CSS_SELECTOR, "table.sides").text
    break_url = browser.current_url
    _propose(browser, "CONFIRMED_FAILED", "银行确认未付款 the bank confirms it never paid")
    assert gateway.state(key) == "PAID"
    assert browser.find_element(By.ID, "proposed-by").text == "operator:otto"
    _shot(browser, "22-reconciliation-proposed")

    browser.find_element(By.ID, "approve-button").click()  # an operator may not approve
    _wait(browser).until(ec.presence_of_element_located((By.ID, "refused")))
    assert "权限不足" in browser.find_element(By.ID, "refused").text
    assert gateway.state(key) == "PAID"
    _shot(browser, "23-reconciliation-approve-refused-operator")

    _sign_in(browser, gateway, "anna", break_url.removeprefix(gateway.url))
    _wait(browser).until(ec.presence_of_element_located((By.ID, "approve-form")))
    browser.find_element(By.ID, "approve-button").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice.ok"), "已批准"))
    assert browser.find_element(By.CSS_SELECTOR, '#resolution-state [data-rs="APPROVED"]')
    assert browser.find_element(By.CSS_SELECTOR, '#break-state [data-bs="CLOSED"]')
    assert browser.find_element(By.ID, "approved-by").text == "operator:anna"
    history = browser.find_element(By.CSS_SELECTOR, "table.events").text
    assert "proposed" in history and "approved" in history and "operator:otto" in history
    assert gateway.state(key) == "FAILED"
    break_id = break_url.rsplit("/", 1)[1]
    entries = [e for e in reversed(gateway.store(accounts.list_audit)["entries"]) if e["target"] == break_id]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        ("operator:otto", "recon.propose", "ok"),
        ("operator:otto", "recon.approve", "refused"),
        ("operator:anna", "recon.approve", "ok"),
    ]
    _shot(browser, "24-reconciliation-approved")
    browser.find_element(By.CSS_SELECTOR, "dl.facts a[href^='/vouchers/']").click()
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, 'dl.facts [data-state="FAILED"]')))
    assert "recon_failed" in browser.find_element(By.CSS_SELECTOR, "table.timeline").text
    _shot(browser, "25-voucher-corrected")


def test_the_proposer_may_not_approve_their_own_resolution(
    gateway: Gateway, browser: Any, night: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    key = night["keys"][1]  # paid in the ledger, failed on the statement
    _sign_in(browser, gateway, "anna", f"/reconciliation/{night['run_id']}?kind=status_mismatch")
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "break-count"), "1"))
    _break_link(browser, key.rsplit("-", 1)[1])
    _wait(browser).until(ec.presence_of_element_located((By.ID, "propose-form")))
    _propose(browser, "CONFIRMED_FAILED", "对账单显示失败 the statement says failed")
    browser.find_element(By.ID, "approve-button").click()
    _wait(browser).until(ec.presence_of_element_located((By.ID, "recon-refused")))
    assert "four eyes" in browser.find_element(By.ID, "refusal").text
    assert browser.find_element(By.CSS_SELECTOR, '#resolution-state [data-rs="PROPOSED"]')
    assert gateway.state(key) == "PAID"
    _shot(browser, "26-reconciliation-four-eyes-refused")
    break_path = browser.current_url.removeprefix(gateway.url).rsplit("/", 1)[0]  # the POST's URL, less the step

    _sign_in(browser, gateway, "adam", break_path)
    _wait(browser).until(ec.presence_of_element_located((By.ID, "approve-form")))
    browser.find_element(By.ID, "approve-button").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice.ok"), "已批准"))
    assert gateway.state(key) == "FAILED"

    break_id = break_path.rsplit("/", 1)[1]
    entries = [e for e in reversed(gateway.store(accounts.list_audit)["entries"]) if e["target"] == break_id]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        ("operator:anna", "recon.propose", "ok"),
        ("operator:anna", "recon.approve", "refused"),
        ("operator:adam", "recon.approve", "ok"),
    ]
    assert "four eyes" in entries[1]["detail"]["why"] and entries[0]["detail"]["state"] == "PROPOSED"
