"""Reconciliation in the Prometheus exposition: open breaks by bank and class, each bank's latest check date."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from twisted.web.resource import Resource

from gateway.dashboard.server import Dashboard
from reconciliation.model import BreakClass
from tests.gateway.dashboard.test_web_auth import Req, serve, sign_in
from tests.gateway.dashboard.test_web_auth import site as site
from tests.reconcile.helpers import BANK, CHECK_DATE, run_file, seed_ledger, spoilt_statement, write_text


def test_metrics_count_open_breaks_and_the_latest_check_date(
    site: tuple[Resource, Dashboard], db_engine: Engine, tmp_path: Path
) -> None:
    _, dash = site
    dash.metrics.refresh()
    before = dash.metrics.exposition().decode()
    assert f'tgw_recon_last_check_date_seconds{{bank="{BANK}"}} 0.0' in before
    assert "tgw_recon_open_breaks{" not in before

    seed_ledger(db_engine, 10, failed=1, returned=0)
    lines, injected = spoilt_statement(db_engine, {BreakClass.AMOUNT_MISMATCH: 2, BreakClass.MISSING_AT_BANK: 1})
    run_file(db_engine, write_text(tmp_path / "s.txt", lines, injected.declared(lines)))
    dash.metrics._db_at = None  # the gauges are cached for CACHE_S: read the store again now
    dash.metrics.refresh()
    text = dash.metrics.exposition().decode()
    assert f'tgw_recon_open_breaks{{bank="{BANK}",class="amount_mismatch"}} 2.0' in text
    assert f'tgw_recon_open_breaks{{bank="{BANK}",class="missing_at_bank"}} 1.0' in text
    midnight = datetime(CHECK_DATE.year, CHECK_DATE.month, CHECK_DATE.day, tzinfo=UTC).timestamp()
    (sample,) = [
        s
        for family in text_string_to_metric_families(text)
        if family.name == "tgw_recon_last_check_date_seconds"
        for s in family.samples
        if s.labels == {"bank": BANK}
    ]
    assert sample.value == midnight


def test_the_voucher_page_says_where_reconciliation_left_it(
    site: tuple[Resource, Dashboard], db_engine: Engine, tmp_path: Path
) -> None:
    root, _ = site
    vouchers = seed_ledger(db_engine, 6, failed=0, returned=0)
    viewer = sign_in(root, "vera")

    def page(v: object) -> str:
        key = quote(str(v.key), safe="")  # type: ignore[attr-defined]
        response = serve(root, Req("GET", f"/vouchers/{key}", cookies=viewer))
        assert response.responseCode == 200
        return str(response.body)

    assert "not reconciled yet" in page(vouchers[0])
    lines, injected = spoilt_statement(db_engine, {BreakClass.AMOUNT_MISMATCH: 1})
    day = run_file(db_engine, write_text(tmp_path / "s.txt", lines, injected.declared(lines)))
    (broken,) = injected.keys[BreakClass.AMOUNT_MISMATCH]
    for v in vouchers:
        text = page(v)
        if f"{v.vt_code}-{v.voucher_no}" == broken:
            assert "break" in text and "/reconciliation/breaks/" in text and "amount_mismatch" in text
        else:
            assert "reconciled" in text and f'href="/reconciliation/{day.run_id}"' in text
