"""Statements over the link (gateway/reconcile/link.py) on the synchronous store, SQLite and PostgreSQL: the
4005 request, 4006 pages in any order, duplicates, pages that start the set over, superseding, completion, the
run and its 2507, timeouts and refusals; and a return's pay date on the ledger port."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from twisted.internet.task import Clock

from gateway import config as configuration
from gateway.config import ConfigError
from gateway.hub import Hub
from gateway.payments import service
from gateway.reconcile import link as recon_link
from gateway.reconcile.discrepancies import parse_counts, spoiler
from gateway.reconcile.store_port import StoreLedger
from gateway.store.db import transaction
from gateway.store.tables import outbox, recon_pages, recon_requests, recon_runs
from protocols.messages import (
    Message,
    ReconcileResult,
    Reply,
    ReturnNotice,
    Statement,
    StatementDetail,
    StatementRequest,
)
from reconciliation.model import BreakClass
from simulators.ledger import paginate
from tests.gateway.conftest import NOW_NAIVE, Bank, Link, emptied, write_instance
from tests.reconcile.helpers import BANK, CHECK_DATE, seed_ledger, true_statement

SEED = random.randrange(2**32)


@pytest.fixture
def pg_db_engine(pg_engine: Engine) -> Engine:
    """The session's PostgreSQL database, emptied quickly for this module (see tests.gateway.conftest.emptied)."""
    return emptied(pg_engine)


def pages_of(lines: list[StatementDetail], size: int, declared: tuple[int, int] | None = None) -> list[Statement]:
    return paginate(CHECK_DATE, lines, size, declared)


def some_lines(n: int) -> list[StatementDetail]:
    return [
        StatementDetail(
            vt_code="5201",
            voucher_no=f"5201450100{i:06d}",
            x_agent_business_no=f"ICBC{i:08d}",
            x_pay_date=CHECK_DATE,
            amt_fen=10_000 + i,
            pro_state=0,
            payee_acct_no="6222000000000001",
        )
        for i in range(n)
    ]


def store_page(engine: Engine, page: Statement, msg_id: str, bank: str = BANK) -> list[tuple[str, dict[str, Any]]]:
    with transaction(engine) as conn:
        events, kick, voucher_id = recon_link.apply_statement(conn, bank, page, msg_id, NOW_NAIVE)
    assert kick is False and voucher_id is None
    return events


def ask(engine: Engine, bank: str = BANK, day: date = CHECK_DATE) -> str:
    with transaction(engine) as conn:
        return recon_link.request_statement(conn, bank, day, "test:link", NOW_NAIVE, "450100000000", CHECK_DATE)


def requests(engine: Engine) -> list[dict[str, Any]]:
    with transaction(engine, read_only=True) as conn:
        return [dict(r) for r in conn.execute(select(recon_requests).order_by(recon_requests.c.id)).mappings()]


def held(engine: Engine, bank: str = BANK) -> list[int]:
    with transaction(engine, read_only=True) as conn:
        return list(
            conn.execute(
                select(recon_pages.c.cur_pack_no)
                .where(recon_pages.c.bank_code == bank)
                .order_by(recon_pages.c.cur_pack_no)
            ).scalars()
        )


def outbox_rows(engine: Engine, msg_no: str) -> list[dict[str, Any]]:
    with transaction(engine, read_only=True) as conn:
        return [
            dict(r)
            for r in conn.execute(select(outbox).where(outbox.c.msg_no == msg_no).order_by(outbox.c.id)).mappings()
        ]


def kinds(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [kind for kind, _ in events]


# --- the store side --------------------------------------------------------------------------------------------


def test_a_request_is_a_row_and_a_4005_in_the_outbox(db_engine: Engine) -> None:
    msg_id = ask(db_engine)
    (row,) = requests(db_engine)
    assert (row["msg_id"], row["bank_code"], row["check_date"], row["state"]) == (msg_id, BANK, CHECK_DATE, "REQUESTED")
    assert msg_id.startswith(f"S{NOW_NAIVE:%Y%m%d}") and len(msg_id) <= 32
    (sent,) = outbox_rows(db_engine, "4005")
    message = service._outbox_message(sent["document"])
    assert (sent["msg_id"], sent["state"], message.body) == (msg_id, "PENDING", StatementRequest(check_date=CHECK_DATE))


def test_pages_in_any_order_complete_the_statement_once(db_engine: Engine) -> None:
    print(f"seed {SEED}")
    msg_id = ask(db_engine)
    pages = pages_of(some_lines(10), 3)
    assert len(pages) == 4
    order = list(pages)
    random.Random(SEED).shuffle(order)
    for n, page in enumerate(order, 1):
        events = store_page(db_engine, page, f"ICBC{n:08d}")
        (row,) = requests(db_engine)
        if n < len(order):
            assert events == [] and row["state"] == "RECEIVING"
        else:
            assert row["state"] == "COMPLETE"
            assert events == [
                (
                    "statement_complete",
                    {"bank": BANK, "check_date": "2026-11-23", "request": msg_id, "pages": 4, "lines": 10},
                )
            ]
    assert held(db_engine) == [1, 2, 3, 4]


def test_a_page_held_already_changes_nothing(db_engine: Engine) -> None:
    ask(db_engine)
    first, second = pages_of(some_lines(4), 2)
    assert store_page(db_engine, first, "ICBC00000001") == []
    assert store_page(db_engine, first, "ICBC00000002") == []  # the same page again, under a new MsgId
    assert held(db_engine) == [1] and requests(db_engine)[0]["state"] == "RECEIVING"
    assert kinds(store_page(db_engine, second, "ICBC00000003")) == ["statement_complete"]
    assert store_page(db_engine, second, "ICBC00000004") == []  # complete already: no second run
    assert held(db_engine) == [1, 2] and requests(db_engine)[0]["state"] == "COMPLETE"


def test_pages_that_disagree_start_the_set_over(db_engine: Engine) -> None:
    ask(db_engine)
    lines = some_lines(6)
    a1, a2, _ = pages_of(lines, 2)
    assert store_page(db_engine, a1, "ICBC00000001") == [] and store_page(db_engine, a2, "ICBC00000002") == []
    # another total: the bank has sent another statement; what was held is dropped
    b1, b2, b3 = pages_of(lines, 2, declared=(6, sum(x.amt_fen for x in lines) + 1))
    events = store_page(db_engine, b3, "ICBC00000003")
    assert events == [("statement_restarted", {"bank": BANK, "check_date": "2026-11-23", "pages_dropped": 2})]
    assert held(db_engine) == [3]
    # the same page number with other details (same totals) starts over as well
    other = replace(b3, details=(replace(b3.details[0], payee_acct_no="6222000000000009"), *b3.details[1:]))
    assert kinds(store_page(db_engine, other, "ICBC00000004")) == ["statement_restarted"]
    assert held(db_engine) == [3]
    assert kinds(store_page(db_engine, b1, "ICBC00000005")) == []
    assert kinds(store_page(db_engine, b2, "ICBC00000006")) == ["statement_complete"]
    with transaction(db_engine, read_only=True) as conn:
        documents = conn.execute(select(recon_pages.c.document).where(recon_pages.c.cur_pack_no == 3)).scalars()
        assert json.loads(next(documents))["DetailList"][0]["PayeeAcctNo"] == "6222000000000009"


def test_a_new_request_supersedes_an_unfinished_one_and_clears_its_pages(db_engine: Engine) -> None:
    first = ask(db_engine)
    page, _ = pages_of(some_lines(4), 2)
    store_page(db_engine, page, "ICBC00000001")
    second = ask(db_engine)
    old, new = requests(db_engine)
    assert (old["msg_id"], old["state"], old["error"]) == (first, "FAILED", f"superseded by {second}")
    assert (new["msg_id"], new["state"]) == (second, "REQUESTED")
    assert held(db_engine) == []
    stale, fresh = outbox_rows(db_engine, "4005")
    assert (stale["state"], fresh["state"]) == ("NACKED", "PENDING")  # the first 4005 had not gone: it stays home
    ask(db_engine, day=CHECK_DATE - timedelta(days=1))  # another date is another request: nothing superseded
    assert [r["state"] for r in requests(db_engine)] == ["FAILED", "REQUESTED", "REQUESTED"]


def test_a_pushed_statement_is_kept_and_completes_without_a_request(db_engine: Engine) -> None:
    (page,) = pages_of(some_lines(2), 5)
    events = store_page(db_engine, page, "ICBC00000001")
    assert events == [
        ("statement_complete", {"bank": BANK, "check_date": "2026-11-23", "request": None, "pages": 1, "lines": 2})
    ]
    assert requests(db_engine) == []


def test_a_statement_of_too_many_pages_is_refused(db_engine: Engine) -> None:
    page = Statement(check_date=CHECK_DATE, all_num=0, all_amt_fen=0, child_pack_num=10_001, cur_pack_no=1)
    with pytest.raises(service.Refused, match="at most 10000 pages"), transaction(db_engine) as conn:
        recon_link.apply_statement(conn, BANK, page, "ICBC00000001", NOW_NAIVE)
    assert held(db_engine) == []


def test_the_banks_refusal_of_the_4005_fails_the_request(db_engine: Engine) -> None:
    msg_id = ask(db_engine)
    with transaction(db_engine) as conn:
        events = recon_link.bank_answered(conn, BANK, "4005", msg_id, 91006, "不支持", NOW_NAIVE)
        assert recon_link.bank_answered(conn, BANK, "4005", msg_id, 90000, "", NOW_NAIVE) == []
    error = "the bank refused the statement request: 91006 不支持"
    assert events == [("statement_refused", {"bank": BANK, "request": msg_id, "error": error})]
    assert (requests(db_engine)[0]["state"], requests(db_engine)[0]["error"]) == ("FAILED", error)


def test_a_returns_pay_date_is_the_notices_not_the_day_it_was_recorded(db_engine: Engine) -> None:
    vouchers = seed_ledger(db_engine, 3, failed=0, returned=0)
    v = vouchers[0]
    notice = ReturnNotice(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code="2252",
        voucher_no="2252450100000077",
        ori_vt_code=v.vt_code,
        original_voucher_no=v.voucher_no,
        pay_amt_fen=-1_00,
        x_pay_date=CHECK_DATE,
        x_agent_business_no="ICBCR0077",
        remark="退票",
    )
    with transaction(db_engine) as conn:  # booked on CHECK_DATE, reported to the gateway two days later
        service.apply_return(conn, BANK, notice, "N00000077", NOW_NAIVE + timedelta(days=2), f"bank:{BANK}")
    port = StoreLedger(db_engine)
    (ret,) = [e for e in port.entries(BANK, CHECK_DATE) if e.vt_code == "2252"]
    assert (ret.voucher_no, ret.pay_date, ret.amount_fen) == ("2252450100000077", CHECK_DATE, -1_00)
    later_day = CHECK_DATE + timedelta(days=2)
    assert [e for e in port.entries(BANK, later_day) if e.vt_code == "2252"] == []
    assert port.control_totals(BANK, CHECK_DATE).count == 4


# --- through the hub: a bank's session, the run, the 2507 ------------------------------------------------------


def _reply(bank: Bank, message: Message) -> bytes:
    return bank.frame(Reply(ori_msg_no=message.head.msg_no, result=90000, add_word=""), msg_ref=message.head.msg_id)


def _answers(messages: list[Message]) -> list[int]:
    return [m.body.result for m in messages if isinstance(m.body, Reply)]


def test_request_pages_run_and_2507_over_a_session(hub: Hub, link: Link, clock: Clock, db_engine: Engine) -> None:
    print(f"seed {SEED}")
    link.sign_on()
    seed_ledger(db_engine, 9, failed=1, returned=1)
    lines = true_statement(db_engine)
    outcome: list[Any] = []
    link_reconciler_of(hub).reconcile(BANK, CHECK_DATE, "test:link").addBoth(outcome.append)
    clock.advance(0)
    (request,) = [m for m in link.received() if m.head.msg_no == "4005"]
    assert request.body == StatementRequest(check_date=CHECK_DATE)
    link.send(_reply(link.bank, request))
    pages = pages_of(lines, 4)
    assert len(pages) == 3
    random.Random(SEED).shuffle(pages)
    for page in pages:
        link.send(link.bank.frame(page))
        clock.advance(0)
    written = link.received()
    assert _answers(written) == [90000, 90000, 90000]
    (result,) = [m for m in written if m.head.msg_no == "2507"]
    assert result.body == ReconcileResult(check_date=CHECK_DATE, x_check_result=0, x_diff_num=0, details=())
    (summary,) = outcome
    assert isinstance(summary, dict), summary
    assert summary["breaks"] == {} and summary["open_breaks"] == 0 and summary["statement"]["count"] == len(lines)
    assert summary["result_msg_id"] == result.head.msg_id and summary["request"] == request.head.msg_id
    (row,) = requests(db_engine)
    assert (row["state"], row["run_id"], row["result_msg_id"]) == ("RECONCILED", summary["run_id"], result.head.msg_id)
    with transaction(db_engine, read_only=True) as conn:
        run = conn.execute(select(recon_runs)).mappings().one()
    assert (run["result_msg_id"], run["result_sent_at"]) == (result.head.msg_id, NOW_NAIVE)
    assert Path(summary["reports"]["html"]).exists()
    link.send(_reply(link.bank, result))
    assert outbox_rows(db_engine, "2507")[0]["state"] == "ACKED"


def test_breaks_go_to_the_bank_in_the_2507(hub: Hub, link: Link, clock: Clock, db_engine: Engine) -> None:
    link.sign_on()
    seed_ledger(db_engine, 12, failed=2, returned=1)
    counts = parse_counts("amount_mismatch=1,missing_at_bank=1,duplicate=1,summary_mismatch=1")
    spoilt = spoiler(counts, SEED)(true_statement(db_engine), CHECK_DATE)
    outcome: list[Any] = []
    link_reconciler_of(hub).reconcile(BANK, CHECK_DATE, "test:link").addBoth(outcome.append)
    for page in pages_of(spoilt.lines, 5, spoilt.declared):
        link.send(link.bank.frame(page))
    clock.advance(0)
    (result,) = [m for m in link.received() if m.head.msg_no == "2507"]
    assert isinstance(result.body, ReconcileResult)
    assert result.body.x_check_result == 1 and result.body.x_diff_num == 4
    (summary,) = outcome
    assert summary["breaks"] == {k: v for k, v in spoilt.injected.items() if v}
    assert spoilt.injected == {c.value: counts.get(c, 0) for c in BreakClass}


def test_a_page_against_the_rules_is_refused_and_not_kept(hub: Hub, link: Link, db_engine: Engine) -> None:
    link.sign_on()
    bad = replace(some_lines(1)[0], pro_state=1)  # a return with a positive amount
    link.send(link.bank.frame(pages_of([bad], 5)[0]))
    (answer,) = [m for m in link.received() if m.head.msg_no == "9120"]
    assert isinstance(answer.body, Reply) and answer.body.result == 91002
    assert held(db_engine) == []


def test_a_statement_that_cannot_be_reconciled_fails_the_request_and_sends_nothing(
    hub: Hub, link: Link, clock: Clock, db_engine: Engine
) -> None:
    outcome: list[Any] = []
    msg_id = [None]
    reconciler = link_reconciler_of(hub)
    reconciler.request(BANK, CHECK_DATE, "test:link").addCallback(lambda m: msg_id.__setitem__(0, m))
    reconciler.watch(msg_id[0] or "").addBoth(outcome.append)
    (page,) = pages_of(some_lines(1), 5)
    store_page(db_engine, page, "ICBC00000001")
    with transaction(db_engine) as conn:  # a page kept by an older version that no longer holds: no voucher number
        document = json.loads(conn.execute(select(recon_pages.c.document)).scalar_one())
        document["DetailList"][0].update(VoucherNo="", XAgentBusinessNo="")
        conn.execute(recon_pages.update().values(document=json.dumps(document)))
    reconciler.statement_complete({"bank": BANK, "check_date": CHECK_DATE.isoformat(), "request": msg_id[0]})
    (failure,) = outcome
    assert failure.check(recon_link.ReconcileFailed) and "neither a voucher number nor a bank serial" in str(
        failure.value
    )
    (row,) = requests(db_engine)
    assert row["state"] == "FAILED" and "neither a voucher number" in row["error"]
    assert outbox_rows(db_engine, "2507") == [] and reconciler.failures == 1


def test_no_statement_in_time_fails_the_request(hub: Hub, link: Link, clock: Clock, db_engine: Engine) -> None:
    outcome: list[Any] = []
    reconciler = link_reconciler_of(hub)
    reconciler.reconcile(BANK, CHECK_DATE, "test:link").addBoth(outcome.append)
    clock.advance(hub.config.reconciliation.statement_timeout_s - 1)
    assert outcome == [] and requests(db_engine)[0]["state"] == "REQUESTED"
    clock.advance(1)
    (failure,) = outcome
    assert failure.check(recon_link.StatementTimeout)
    assert requests(db_engine)[0]["state"] == "FAILED" and "within 600 s" in requests(db_engine)[0]["error"]


def test_a_refused_4005_fails_the_waiting_call(hub: Hub, link: Link, clock: Clock, db_engine: Engine) -> None:
    link.sign_on()
    outcome: list[Any] = []
    link_reconciler_of(hub).reconcile(BANK, CHECK_DATE, "test:link").addBoth(outcome.append)
    clock.advance(0)
    (request,) = [m for m in link.received() if m.head.msg_no == "4005"]
    nak = Reply(ori_msg_no="4005", result=91002, add_word="unknown MsgNo")
    link.send(link.bank.frame(nak, msg_ref=request.head.msg_id))
    (failure,) = outcome
    assert failure.check(recon_link.StatementRefused) and "91002" in str(failure.value)
    assert requests(db_engine)[0]["state"] == "FAILED"


def test_unknown_bank_is_refused(hub: Hub) -> None:
    outcome: list[Any] = []
    link_reconciler_of(hub).reconcile("NOPE", CHECK_DATE, "test:link").addBoth(outcome.append)
    (failure,) = outcome
    assert failure.check(ValueError) and "unknown bank" in str(failure.value)


# --- configuration and the discrepancy plan --------------------------------------------------------------------


def _instance(directory: Path, pki_template: Path, setting: str) -> Path:
    path = write_instance(directory, pki_template)
    text = path.read_text(encoding="utf-8")
    assert text.count("\n[reconciliation]\n") == 1
    path.write_text(text.replace("\n[reconciliation]\n", f"\n[reconciliation]\n{setting}\n"), encoding="utf-8")
    return path


def test_the_timeout_is_configured_and_checked(pki_template: Path, tmp_path: Path) -> None:
    assert "# statement_timeout_s = 600" in write_instance(tmp_path / "d", pki_template).read_text(encoding="utf-8")
    path = _instance(tmp_path / "a", pki_template, "statement_timeout_s = 45")
    assert configuration.load(path).reconciliation.statement_timeout_s == 45.0
    for n, (text, error) in enumerate(
        [
            ("statement_timeout_s = 0", "must be positive"),
            ('statement_timeout_s = "long"', "must be a float"),
            ("statment_timeout_s = 5", "unknown setting reconciliation.statment_timeout_s"),
        ]
    ):
        bad = _instance(tmp_path / f"b{n}", pki_template, text)
        with pytest.raises(ConfigError, match=error):
            configuration.load(bad)


def test_discrepancy_counts_are_parsed_strictly() -> None:
    assert parse_counts("amount_mismatch=2, duplicate=1") == {BreakClass.AMOUNT_MISMATCH: 2, BreakClass.DUPLICATE: 1}
    every = parse_counts("all=2")
    assert every[BreakClass.SUMMARY_MISMATCH] == 1 and every[BreakClass.CUTOFF_TIMING] == 2 and len(every) == 8
    for text, error in [
        ("amount=1", "no break class 'amount'"),
        ("duplicate", "is not CLASS=N"),
        ("duplicate=-1", "is not CLASS=N"),
        ("summary_mismatch=2", "one summary"),
    ]:
        with pytest.raises(ValueError, match=error):
            parse_counts(text)


def test_the_same_seed_spoils_a_date_the_same_way() -> None:
    lines = some_lines(30)
    counts = parse_counts("all=1")
    one, two = spoiler(counts, 5)(lines, CHECK_DATE), spoiler(counts, 5)(lines, CHECK_DATE)
    assert one == two and one.lines != lines
    assert one.declared[1] != sum(x.amt_fen for x in one.lines)  # the summary mismatch
    with pytest.raises(ValueError):
        spoiler(parse_counts("missing_at_bank=5"), 5)(some_lines(2), CHECK_DATE)


def link_reconciler_of(hub: Hub) -> recon_link.LinkReconciler:
    return recon_link.reconciler_of(hub)


def test_tgw_reconcile_over_the_link_needs_a_running_gateway(config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway import cli

    argv = ["reconcile", "--config", str(config.path), "--date", "20261123", "--bank", BANK]
    assert cli.main(argv) == 2
    assert "the gateway is not reachable" in capsys.readouterr().err
    assert cli.main([*argv, "--format", "text"]) == 2
    assert "--format describes a statement file" in capsys.readouterr().err


def test_a_kept_page_decodes_as_jsonform_would() -> None:
    from protocols import jsonform

    lines = some_lines(5)
    lines[1] = replace(lines[1], amt_fen=-2_50, pro_state=1, x_pay_date=CHECK_DATE - timedelta(days=1))
    lines[2] = replace(lines[2], pro_state=2)
    for page in [*pages_of(lines, 2), *pages_of([], 2), *pages_of(lines, 5, declared=(9, -1))]:
        document = recon_link._page_document(page)
        assert recon_link.decode_page(document) == page == jsonform.from_json(Statement, json.loads(document))


def test_a_newer_request_tells_the_older_ones_waiters_at_once(hub: Hub, clock: Clock, db_engine: Engine) -> None:
    reconciler = link_reconciler_of(hub)
    first: list[Any] = []
    second: list[Any] = []
    reconciler.reconcile(BANK, CHECK_DATE, "test:link").addBoth(first.append)
    reconciler.reconcile(BANK, CHECK_DATE - timedelta(days=1), "test:link").addBoth(second.append)
    reconciler.reconcile(BANK, CHECK_DATE, "test:link")
    (failure,) = first
    assert failure.check(recon_link.StatementSuperseded) and "superseded by S" in str(failure.value)
    assert second == []  # another date
    clock.advance(hub.config.reconciliation.statement_timeout_s)
    assert second[0].check(recon_link.StatementTimeout)
    assert [r["state"] for r in requests(db_engine)] == ["FAILED", "FAILED", "FAILED"]
