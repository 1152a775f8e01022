"""The nightly reconciliation with two real `tgw run` processes on one database (SQLite and PostgreSQL).

No clock is faked and nothing waits for a wall-clock time: the instance has worked for a week (its first nightly
date is set a week back, as a week of nightly runs would have left it), so both gateways, started now, owe the
latest due date at once (yesterday after 02:00 Asia/Shanghai, the day before until then). Both race for every
bank's claim; each bank's statement is asked for once (one 4005, one statement, one run, one 2507), by
whichever process won it, although the banks are connected to the first process only (a run the other process
asked for completes there, and the asker finds it in the store). A restarted gateway runs nothing again.
"""

from __future__ import annotations

import os
import queue
import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, func, select

from gateway.reconcile.scheduler import DONE, first_date, latest_due, schedule_rows
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import recon_requests, recon_runs
from tests.e2e.harness import E2E, WAIT_S, GatewayProcess, Instance, WaitTimeout

BANKS: Final = ("ICBC", "CCB")
SHANGHAI: Final = ZoneInfo("Asia/Shanghai")


def _due_now() -> date:
    return latest_due(datetime.now(UTC), time(2, 0), SHANGHAI)


def _second_instance(a: Instance, directory: Path) -> Instance:
    """A second gateway of the same instance (same PKI and banks) on the same database: another process, as a
    second node of a cluster runs."""
    shutil.copytree(a.directory, directory, ignore=shutil.ignore_patterns("gateway.db*", "run.json", "reports"))
    b = Instance(directory, a.backend, a.banks, a.database_url)
    b.tune("gateway", database=a.config().database_url)  # SQLite: the first one's file, not a copy
    return b


def _wait_line(process: GatewayProcess, text: str, timeout_s: float = WAIT_S) -> str:
    """Block until the process logs a line containing `text` (read as it comes; earlier lines count)."""
    for line in process.lines:
        if text in line:
            return line
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    while True:
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        try:
            line = process._queue.get(timeout=max(0.0, remaining))
        except queue.Empty:
            raise WaitTimeout(f"no line with {text!r} within {timeout_s:g} s:\n{process.output}") from None
        if line is None:
            raise AssertionError(f"tgw run exited before logging {text!r}:\n{process.output}")
        if text in line:
            return line


def _state(conn: Connection, day: date) -> dict[str, Any]:
    rows = schedule_rows(conn, day)
    r, q = recon_runs.c, recon_requests.c
    requests = dict(
        conn.execute(
            select(q.bank_code, func.count())
            .where(q.check_date == day, q.requested_by == "nightly")
            .group_by(q.bank_code)
        ).all()
    )
    runs = dict(conn.execute(select(r.bank_code, r.status).where(r.check_date == day)).all())
    return {"rows": rows, "requests": requests, "runs": runs}


def _all_done(conn: Connection, day: date) -> dict[str, Any] | None:
    state = _state(conn, day)
    rows = state["rows"]
    if sorted(rows) == sorted(BANKS) and all(row.outcome == DONE for row in rows.values()):
        return state
    return None


@pytest.mark.banks(*BANKS)
def test_two_gateways_on_one_database_reconcile_each_bank_once(e2e: E2E, tmp_path: Path) -> None:
    a = e2e.instance
    engine = create_engine_for(a.config().database_url)
    try:
        with transaction(engine) as conn:  # a week of nightly runs behind this instance
            first_date(conn, _due_now() - timedelta(days=7))
    finally:
        engine.dispose()
    b = _second_instance(a, tmp_path / "second")

    before = _due_now()
    second = GatewayProcess(b)  # the second node starts first: it wins every claim, with no bank connected
    try:
        second.wait_ready()
        day = _wait_line(second, "nightly reconciliation of 20").split("nightly reconciliation of ")[1][:10]
        check_date = date.fromisoformat(day)
        for code in BANKS:
            _wait_line(second, f"nightly reconciliation of {code} {check_date}: started by")
        first = e2e.run_process()  # then the first: it loses every claim ...
        after = _due_now()
        assert check_date in {before, after}, (check_date, before, after)
        _wait_line(first, f"nightly reconciliation of {check_date} is due")
        for code in BANKS:
            e2e.bank(code, address=first.bank_address)  # ... and the banks connect to it, not to the claimant

        state = e2e.until_store(_all_done, check_date, what=f"both banks' nightly runs of {check_date} to be DONE")
        nodes = {f"{os.uname().nodename}:{p.proc.pid}" for p in (first, second)}
        for code in BANKS:
            row = state["rows"][code]
            assert (row.attempts, row.claimed_by in nodes) == (1, True), row
            assert state["requests"][code] == 1  # one 4005: the process that lost the claim asked nothing
            assert row.claimed_by == f"{os.uname().nodename}:{second.proc.pid}"
            assert state["runs"][code] == "DONE"
            bank = e2e.banks[code]
            assert e2e.rt.call(lambda bank=bank: bank.stats.statements_sent) == 1
            e2e.wait_bank(bank, lambda bk: bk.reconcile_results.get(check_date), f"{code}'s 2507 of {check_date}")
            # the claimant learnt from the store: the run completed in the process the bank talks to
            assert '"found_in_store":true' in (row.detail or ""), row.detail
        assert f"nightly reconciliation of ICBC {check_date}: started by" not in first.output

        # both stop; one comes back (a restart): nothing runs again
        assert first.terminate() == 0 and second.terminate() == 0
        again = GatewayProcess(b)
        try:
            again.wait_ready()
            _wait_line(again, f"nightly reconciliation of {check_date} finished")
            later = e2e.until_store(_all_done, check_date, what="the runs still DONE")
            assert later["requests"] == state["requests"]
            assert {c: (r.claimed_by, r.attempts, r.finished_at) for c, r in later["rows"].items()} == {
                c: (r.claimed_by, r.attempts, r.finished_at) for c, r in state["rows"].items()
            }
        finally:
            again.close()
    finally:
        second.close()
