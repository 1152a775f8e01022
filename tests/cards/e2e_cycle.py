"""The official-card cycle end to end, over real mutual TLS on loopback: run as a program, it prints what it saw.

`python -m tests.cards.e2e_cycle --dir DIR --database URL` makes an instance (`tgw init`'s code path, ports chosen
by the OS), starts the gateway and a simulated ICBC on Twisted's global reactor in a thread of its own, and drives
the cycle the way its users do: the bank pushes 7101s over TLS (real time, the same MsgId again, the daily batch),
the finance side uses `tgw cards …` (reads from the store, writes through the HTTP API), the gateway sends the
repayment vouchers over TLS, and the bank executes them on its ledger and fails one detail by rule
(`fail_details`). It prints one JSON object of observations; `test_e2e.py` asserts on them.

Why a process of its own: Twisted's TLS transports schedule their writes on the global reactor, which runs once
per process; a test process has other tests that run (and stop) it. Every wait is on a condition, with a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import select

T = TypeVar("T")
WAIT_S: Final = 30.0
HEALTH: Final = "102003"
EDUCATION: Final = "101001"


def card(n: int) -> str:
    return f"628288{n:013d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.dir, args.database), ensure_ascii=False, default=str))
    return 0


def run(directory: Path, database: str) -> dict[str, Any]:
    from twisted.internet import reactor as global_reactor
    from twisted.internet.threads import blockingCallFromThread

    from gateway import app, cli
    from gateway import config as configuration
    from gateway.dbthread import in_transaction
    from gateway.demo import bank_setup
    from gateway.payments import service as payments
    from gateway.store import repo
    from gateway.store.db import create_engine_for
    from gateway.store.tables import archive, card_spending, vouchers
    from protocols.messages import CardSpending, QuotaLine, QuotaNotice, SpendRecord
    from simulators.bank import SimulatedBank
    from simulators.rules import FailDetails, Match, Rule, RuleSet

    reactor: Any = global_reactor
    seen: dict[str, Any] = {}
    config_path = directory / "gateway.toml"
    init = ["init", str(directory), "--bank", "ICBC", "--key-type", "ec", "--bank-port", "0", "--web-port", "0"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main([*init, "--database", database]) == 0
    cfg = configuration.load(config_path)

    def call(fn: Callable[..., T], *a: Any) -> T:
        result: T = blockingCallFromThread(reactor, fn, *a)
        return result

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not call(condition):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            threading.Event().wait(0.02)

    def tgw(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([argv[0], argv[1], "--config", str(config_path), *argv[2:]])
        return code, out.getvalue(), err.getvalue()

    engine = create_engine_for(cfg.database_url)

    def store(fn: Callable[..., T], *a: Any) -> T:
        return in_transaction(engine, fn, *a)

    def states() -> dict[str, tuple[str, str | None]]:
        rows = store(
            lambda conn: conn.execute(
                select(card_spending.c.spend_id, card_spending.c.state, card_spending.c.reason)
            ).all()
        )
        return {spend_id: (state, reason) for spend_id, state, reason in rows}

    started = threading.Event()
    reactor.callWhenRunning(started.set)
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
    thread.start()
    assert started.wait(WAIT_S)
    running = call(app.start, cfg, reactor)
    hub = running.hub
    today: date = hub.work_date()
    txn = today - timedelta(days=3)

    def spend(spend_id: str, agency: str, n: int, fen: int, limit_days: int = 30) -> SpendRecord:
        return SpendRecord(
            spend_id=spend_id,
            card_no=card(n),
            card_holder={1: "李明", 2: "黄丽", 3: "韦强"}[n],
            agency_code=agency,
            txn_date=txn,
            txn_time=dtime(9, 12),
            merchant_name="南宁某某酒店",
            amt_fen=fen,
            auth_code="A10332",
            limit_date=txn + timedelta(days=limit_days),
        )

    a = spend("ICBCE2E0001", HEALTH, 1, 86_000)
    b = spend("ICBCE2E0002", HEALTH, 1, 42_800, limit_days=5)  # its repayment fails: the card is closed
    c = spend("ICBCE2E0003", HEALTH, 2, 12_000)
    d = spend("ICBCE2E0004", EDUCATION, 3, 30_000)
    e = spend("ICBCE2E0005", EDUCATION, 3, 5_000)  # rejected: personal
    f = spend("ICBCE2E0006", HEALTH, 2, 900_000)  # beyond the agency's quota
    seen["cards"] = [card(1), card(2), card(3)]
    seen["amounts"] = {r.spend_id: r.amt_fen for r in (a, b, c, d, e, f)}

    rules = RuleSet(
        [Rule(Match(business_type_code="2"), (FailDetails(reason="卡片已销户", spend_id=b.spend_id),), "closed")]
    )
    bank = SimulatedBank(bank_setup(cfg, "ICBC", running.bank_address), reactor, rules=rules, seed=11)
    call(bank.start)
    wait_for(lambda: bool(hub.live_sessions("ICBC")), "ICBC to sign on")

    # the finance side grants quota with a 5106: HEALTH exactly A+B+C, EDUCATION plenty
    notice = QuotaNotice(
        adm_div_code="450100",
        st_year=today.year,
        vt_code="5106",
        vou_date=today,
        voucher_no="5106E2E0001",
        lines=(
            QuotaLine(
                id="1",
                agency_code=HEALTH,
                agency_name="南宁市卫生健康委员会",
                pay_acct_no="2102010200300000001",
                fund_type_code="1",
                exp_func_code="2100201",
                quota_amt_fen=86_000 + 42_800 + 12_000,
            ),
            QuotaLine(
                id="2",
                agency_code=EDUCATION,
                agency_name="南宁市教育局",
                pay_acct_no="2102010100100000001",
                fund_type_code="1",
                exp_func_code="2050201",
                quota_amt_fen=1_000_000,
            ),
        ),
    )
    call(hub.run_in_store, payments.submit_quota_notice, "ICBC", notice, "e2e", hub.now(), cfg.node)
    hub.kick("ICBC")

    # spending in: real time (A, B), the same MsgId again, then the daily batch with everything
    def push_same_msg_id_twice() -> str:
        msg_id, frame = bank.frame(CardSpending(records=(a, b)))
        bank.unacked[msg_id] = frame
        bank.send(frame)
        bank.send(frame)
        return msg_id

    realtime_id = call(push_same_msg_id_twice)
    call(bank.request, CardSpending(records=(c,)))
    call(bank.request, CardSpending(records=(a, b, c, d, e, f)))
    wait_for(lambda: not bank.unacked and len(states()) == 6 and bank.stats.acks_received >= 3, "the 7101s")
    seen["after_push"] = states()
    seen["results_from_gateway"] = dict(bank.stats.results)
    seen["realtime_msg_id"] = realtime_id

    # the finance side reviews
    code, out, _ = tgw("cards", "list", "--agency", HEALTH, "--json")
    seen["list_health"] = {"code": code, "json": json.loads(out)}
    seen["list_text"] = tgw("cards", "list", "--state", "all")

    def ref(r: SpendRecord) -> str:
        return f"ICBC:{r.spend_id}"

    seen["approve_other_agency"] = tgw("cards", "approve", "--agency", HEALTH, ref(a), ref(d))
    seen["approve_health"] = tgw("cards", "approve", "--agency", HEALTH, "--json", ref(a), ref(b), ref(c))
    seen["approve_twice"] = tgw("cards", "approve", "--agency", HEALTH, ref(a))
    seen["approve_beyond_quota"] = tgw("cards", "approve", "--agency", HEALTH, ref(f))
    seen["approve_education"] = tgw("cards", "approve", "--agency", EDUCATION, ref(d))
    seen["reject_education"] = tgw("cards", "reject", "--agency", EDUCATION, "--reason", "个人消费", ref(e))
    seen["after_review"] = states()
    seen["quota_after_review"] = {
        agency: store(repo.get_quota, "450100", today.year, agency).used_fen  # type: ignore[union-attr]
        for agency in (HEALTH, EDUCATION)
    }

    # repayment out, result in
    code, out, _ = tgw("cards", "repay", "--json")
    seen["repay"] = {"code": code, "json": json.loads(out)}
    keys = [v["key"] for v in seen["repay"]["json"]["vouchers"]]

    def settled() -> bool:
        done = store(
            lambda conn: (
                conn.execute(select(vouchers.c.state).where(vouchers.c.business_type_code == "2")).scalars().all()
            )
        )
        return (
            len(done) == len(keys)
            and all(s in ("PAID", "FAILED") for s in done)
            and "REPAYING" not in {s for s, _ in states().values()}
        )

    wait_for(settled, "the repayments to settle")
    seen["after_repay"] = states()
    seen["vouchers"] = {
        row.voucher_no: (row.state, row.amount_fen, row.x_pay_amt_fen)
        for row in store(lambda conn: conn.execute(select(vouchers).where(vouchers.c.business_type_code == "2")).all())
    }
    seen["quota_after_repay"] = {
        agency: store(repo.get_quota, "450100", today.year, agency).used_fen  # type: ignore[union-attr]
        for agency in (HEALTH, EDUCATION)
    }
    seen["ledger_paid_fen"] = sum(o.paid_fen for o in bank.ledger.outcomes())
    seen["ledger_details"] = {
        o.key.voucher_no: [(dr.id, dr.paid, dr.reason) for dr in o.details] for o in bank.ledger.outcomes()
    }
    seen["show_b"] = tgw("cards", "show", ref(b), "--json")
    later = (today + timedelta(days=40)).strftime("%Y%m%d")
    seen["due_later"] = tgw("cards", "due", "--today", later, "--json")
    seen["due_now"] = tgw("cards", "due", "--json")

    request = urllib.request.Request(
        "http://{}:{}/api/cards/summary".format(*(running.web_address or ("", 0))),
        headers={"Authorization": f"Bearer {cfg.api_token}"},
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        seen["api_summary"] = json.loads(response.read())
    archived = store(lambda conn: [bytes(r) for r in conn.execute(select(archive.c.raw)).scalars()])
    seen["archive_has_card_numbers"] = any(card(1).encode() in raw for raw in archived)

    call(bank.stop)
    call(running.stop)
    engine.dispose()
    reactor.callFromThread(reactor.stop)
    thread.join(WAIT_S)
    return seen


if __name__ == "__main__":
    sys.exit(main())
