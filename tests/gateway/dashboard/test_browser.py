"""The dashboard in a real browser: Debian's headless Chromium driven through chromedriver (Selenium).

A gateway and a simulated ICBC run in this process on loopback (port 0), on a reactor thread, over real mutual
TLS; CCB is configured but never connects, so its vouchers wait (to be cancelled). The tests sign in, watch a
payment the simulated bank makes appear live on the overview, search for it, open it and its signed XML, and
act on a voucher with the right role after being refused with the wrong one. Screenshots go to
`test-artifacts/dashboard/` (gitignored). Every wait is an explicit wait on a condition, never a sleep.

Chromium and chromedriver are required, not optional: where they are missing the tests fail and say how to
install them (`make test` does: `scripts/system-packages.sh chromium cjk-font`).

This module runs Twisted's global reactor on a thread, which can be started once per process: no other test
module may do the same.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest

from gateway import app, cli
from gateway import config as configuration
from gateway.auth import accounts
from gateway.auth.passwords import hash_password
from gateway.dbthread import in_transaction
from gateway.payments import queries
from gateway.store.db import create_engine_for
from protocols import jsonform, samples
from protocols.messages import VoucherKey
from tests import reactor_thread

ARTIFACTS: Final = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"
PASSWORD: Final = "dashboard test password"
WAIT_S: Final = 30
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1000",
    "--lang=zh-CN",
)
T = TypeVar("T")


def _require_chromium() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "the dashboard's browser tests need Debian's chromium and chromium-driver "
            f"(found chromium={chromium}, chromedriver={driver}); install them with "
            "`bash scripts/system-packages.sh chromium cjk-font` (make test does)",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]'", pytrace=False)
    return chromium, driver


@dataclass
class Gateway:
    config: configuration.Config
    running: Any
    reactor: Any
    url: str

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the reactor thread and return its (Deferred's) result."""
        from twisted.internet.threads import blockingCallFromThread

        return blockingCallFromThread(self.reactor, fn, *args)  # type: ignore[no-any-return]

    def store(self, fn: Callable[..., T], *args: Any) -> T:
        engine = create_engine_for(self.config.database_url)
        try:
            return in_transaction(engine, fn, *args)
        finally:
            engine.dispose()

    def submit(self, bank: str, voucher_no: str) -> str:
        """Submit a voucher through the finance-side HTTP API, as the finance system does."""
        import dataclasses

        voucher = dataclasses.replace(samples.direct_voucher(), voucher_no=voucher_no)
        body = json.dumps({"bank": bank, "voucher": jsonform.to_json(voucher)}).encode()
        request = urllib.request.Request(
            f"{self.url}/api/vouchers",
            data=body,
            headers={"Authorization": f"Bearer {self.config.api_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
            return str(json.load(answer)["accepted"][0]["key"])

    def state(self, key: str) -> str:
        found = self.store(queries.get_voucher, VoucherKey.parse(key))
        assert found is not None
        return str(found["state"])


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition outside the browser (the gateway's own state) until it holds or time runs out."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    from twisted.internet import reactor

    from simulators.bank import BankSetup, SimulatedBank

    directory = tmp_path_factory.mktemp("dashboard") / "instance"
    argv = ["init", str(directory), "--bank", "ICBC", "--bank", "CCB", "--key-type", "ec"]
    assert cli.main([*argv, "--bank-port", "0", "--web-port", "0"]) == 0
    cfg = configuration.load(directory / "gateway.toml")
    engine = create_engine_for(cfg.database_url)
    try:
        hashed = hash_password(PASSWORD)
        for name, display, role in (
            ("vera", "王查看", "viewer"),
            ("otto", "李操作", "operator"),
            ("anna", "张审批", "approver"),
            ("adam", "赵管理", "admin"),
        ):
            in_transaction(engine, accounts.create_operator, name, display, role, hashed, _naive_now())
    finally:
        engine.dispose()
    reactor_thread.start()
    gw = Gateway(cfg, None, reactor, "")
    gw.running = gw.call(app.start, cfg, reactor)
    host, port = gw.running.web_address
    gw.url = f"http://{host}:{port}"
    bank_host, bank_port = gw.running.bank_address
    setup = BankSetup(
        code="ICBC",
        host=bank_host,
        port=bank_port,
        node=cfg.node,
        ca_cert=cfg.ca_cert,
        cert=cfg.directory / "pki/banks/ICBC/cert.pem",
        key=cfg.directory / "pki/banks/ICBC/key.pem",
        gateway_signing_cert=cfg.signing_cert,
    )
    bank = SimulatedBank(setup, reactor, seed=7)
    gw.call(bank.start)
    _wait_for(lambda: bool(gw.call(gw.running.hub.live_sessions, "ICBC")), "the simulated ICBC to sign on")
    try:
        yield gw
    finally:
        gw.call(bank.stop)
        gw.call(gw.running.stop)


def _naive_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, driver_path = _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S)


def _shot(driver: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _sign_in(driver: Any, gw: Gateway, username: str, then: str = "/overview") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.delete_all_cookies()
    driver.get(f"{gw.url}{then}")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "login-form")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "who")))
    assert driver.find_element(By.ID, "who").get_attribute("data-role") in ("viewer", "operator", "approver", "admin")


#: Draws two different CJK characters on canvases and compares the pixels: with no CJK font both come out as the
#: same "tofu" box, with one they differ. Returns [differ, width of the first, width of a Latin "W"].
CJK_RENDERS: Final = """
const draw = (text) => { const c = document.createElement('canvas'); c.width = 64; c.height = 64;
  const x = c.getContext('2d'); x.font = '40px ' + getComputedStyle(document.body).fontFamily;
  x.fillText(text, 4, 48); return [c.toDataURL(), x.measureText(text).width]; };
const a = draw('总'), b = draw('览'), w = draw('W');
return [a[0] !== b[0], a[1], w[1]];
"""


def test_sign_in_is_required_and_chinese_renders(gateway: Gateway, browser: Any) -> None:
    """An anonymous visit lands on the sign-in page; a wrong password is refused; CJK glyphs are real glyphs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.delete_all_cookies()
    browser.get(f"{gateway.url}/transactions")
    _wait(browser).until(ec.presence_of_element_located((By.ID, "login-form")))
    assert "/login?next=" in browser.current_url
    differ, cjk_width, latin_width = browser.execute_script(CJK_RENDERS)
    assert differ, "CJK characters render as identical boxes: no CJK font (install fonts-noto-cjk)"
    assert cjk_width > latin_width * 0.9, "CJK glyphs should be full width"
    _shot(browser, "01-login")
    browser.find_element(By.ID, "username").send_keys("otto")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.ID, "login-button").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice.error"), "用户名或密码错误"))


def test_payment_by_the_simulated_bank_appears_live(gateway: Gateway, browser: Any) -> None:
    """Signed in on the overview, a voucher submitted by the finance side is paid by the bank and shows up, live."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _sign_in(browser, gateway, "otto")
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "live-status"), "实时"))
    key = gateway.submit("ICBC", "LIVE0001")
    paid = f'#feed li[data-key="{key}"][data-state="PAID"]'
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, paid)))
    assert browser.find_element(By.CSS_SELECTOR, paid).text.count("¥125,000.00") == 1
    # the summary follows: the PAID count and the bank's link are pushed as fresh fragments
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, '#state-counts [data-state="PAID"]')))
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "bank-links"), "在线"))
    assert gateway.state(key) == "PAID"
    _shot(browser, "02-overview-live")
    browser.set_window_size(1440, 2400)  # the whole overview, charts included
    try:
        _shot(browser, "02b-overview-full")
    finally:
        browser.set_window_size(1440, 1000)


def test_search_open_and_read_the_signed_xml(gateway: Gateway, browser: Any) -> None:
    """Search by voucher number, open the voucher: timeline, verified messages, the signed XML escaped."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    key = gateway.submit("ICBC", "FIND0001")
    _wait_for(lambda: gateway.state(key) == "PAID", f"{key} to be paid")
    _sign_in(browser, gateway, "vera", "/transactions")
    field = browser.find_element(By.ID, "f-voucher_no")
    field.send_keys("FIND0001")
    browser.find_element(By.ID, "search-button").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "result-count"), "1"))
    assert "voucher_no=FIND0001" in browser.current_url
    _shot(browser, "03-search")
    browser.find_element(By.CSS_SELECTOR, "a.vlink").click()
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.timeline")))
    timeline = browser.find_element(By.CSS_SELECTOR, "table.timeline").text
    assert "submitted" in timeline and "receipt_paid" in timeline and "bank:ICBC" in timeline
    messages = browser.find_element(By.CSS_SELECTOR, "table.messages").text
    assert "验签通过" in messages and "5201" in messages
    _shot(browser, "04-voucher")
    browser.find_elements(By.CSS_SELECTOR, "table.messages a")[-1].click()
    _wait(browser).until(ec.presence_of_element_located((By.ID, "signed-xml")))
    xml = browser.find_element(By.ID, "signed-xml").text
    assert "<Message" in xml and "SignatureValue" in xml  # shown as text: it was escaped
    _shot(browser, "05-signed-xml")


def test_cancel_is_refused_for_a_viewer_and_done_by_an_operator(gateway: Gateway, browser: Any) -> None:
    """A viewer who tries to cancel gets an audited refusal; an operator cancels; both are in the audit log."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    key = gateway.submit("CCB", "CANC0001")  # CCB is offline: the voucher waits, ACCEPTED
    path = f"/vouchers/{key}"
    _sign_in(browser, gateway, "vera", path)
    _wait(browser).until(ec.presence_of_element_located((By.ID, "cancel-form")))
    browser.find_element(By.ID, "cancel-reason").send_keys("试图撤销")
    browser.find_element(By.ID, "cancel-button").click()
    _wait(browser).until(ec.presence_of_element_located((By.ID, "refused")))
    assert "权限不足" in browser.find_element(By.ID, "refused").text
    assert gateway.state(key) == "ACCEPTED"
    _shot(browser, "06-refused-viewer")

    _sign_in(browser, gateway, "otto", path)
    _wait(browser).until(ec.presence_of_element_located((By.ID, "cancel-form")))
    browser.find_element(By.ID, "cancel-reason").send_keys("录入错误 entered by mistake")
    browser.find_element(By.ID, "cancel-button").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice.ok"), "凭证已撤销"))
    assert browser.find_element(By.CSS_SELECTOR, 'dl.facts [data-state="CANCELLED"]')
    assert gateway.state(key) == "CANCELLED"
    _shot(browser, "07-cancelled-operator")

    entries = gateway.store(accounts.list_audit)["entries"]
    cancels = [(e["actor"], e["outcome"]) for e in entries if e["action"] == "voucher.cancel" and e["target"] == key]
    assert cancels == [("operator:otto", "ok"), ("operator:vera", "refused")]


def test_banks_and_certificates_page(gateway: Gateway, browser: Any) -> None:
    """An admin sees each bank's link and certificate expiry, and the audit log."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _sign_in(browser, gateway, "adam", "/banks")
    _wait(browser).until(ec.presence_of_element_located((By.ID, "bank-ICBC")))
    days = int(browser.find_element(By.ID, "days-ICBC").text.split("(")[1].split()[0])
    assert days > 300
    _shot(browser, "08-banks")
    browser.get(f"{gateway.url}/audit")
    _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.audit")))
    assert "voucher.cancel" in browser.find_element(By.CSS_SELECTOR, "table.audit").text
    _shot(browser, "09-audit")
