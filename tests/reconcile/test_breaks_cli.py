"""`tgw breaks` on an instance's database (SQLite and PostgreSQL): list, show, reasons and the workflow steps with
their exit codes — 0 done, 1 refused or not found (and the refusal recorded), 2 usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from gateway import cli
from gateway.config import Config
from gateway.demo import create_instance
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import audit_log, vouchers
from protocols.messages import Voucher
from tests.reconcile.helpers import (
    BANK,
    CHECK_DATE,
    break_ids,
    key_of,
    run_file,
    seed_ledger,
    workflow_statement,
    write_text,
)


@dataclass
class Instance:
    cfg: Config
    engine: Engine
    vouchers: list[Voucher]
    ids: dict[tuple[str, str], int]


@pytest.fixture
def instance(db_url: str, tmp_path: Path) -> Iterator[Instance]:
    cfg = create_instance(tmp_path / "instance", [(BANK, "standard")], database=db_url, key_type="ec")
    engine = create_engine_for(db_url)
    vs = seed_ledger(engine, 8, failed=1, returned=1)
    lines, declared = workflow_statement(engine, vs)
    day = run_file(engine, write_text(tmp_path / "s.txt", lines, declared))
    try:
        yield Instance(cfg, engine, vs, break_ids(engine, day.run_id))
    finally:
        engine.dispose()


def tgw(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_show_and_reasons(instance: Instance, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(instance.cfg.path)]
    code, out, err = tgw(capsys, "breaks", "list", *config)
    assert code == 0 and len(out.splitlines()) == 6 and "6 break(s)" in err
    code, out, _ = tgw(capsys, "breaks", "list", *config, "--class", "status_mismatch", "--json")
    listed = json.loads(out)["breaks"]
    assert code == 0 and sorted(b["key"] for b in listed) == sorted(key_of(instance.vouchers[i]) for i in (0, 2))
    code, out, _ = tgw(capsys, "breaks", "list", *config, "--date", f"{CHECK_DATE:%Y%m%d}", "--json")
    assert code == 0 and len(json.loads(out)["breaks"]) == 6
    code, out, _ = tgw(capsys, "breaks", "list", *config, "--date", "20261124", "--json")
    assert code == 0 and json.loads(out)["breaks"] == []
    code, _, err = tgw(capsys, "breaks", "list", *config, "--class", "nonsense")
    assert code == 2 and "unknown break class" in err

    b = instance.ids[("status_mismatch", key_of(instance.vouchers[0]))]
    code, out, _ = tgw(capsys, "breaks", "show", *config, str(b))
    assert code == 0 and str(instance.vouchers[0].key) in out and "FAILED" in out and "PAID" in out
    code, out, _ = tgw(capsys, "breaks", "show", *config, str(b), "--json")
    assert code == 0 and json.loads(out)["id"] == b
    code, _, err = tgw(capsys, "breaks", "show", *config, "999999")
    assert code == 1 and "no break 999999" in err

    code, out, _ = tgw(capsys, "breaks", "reasons")
    assert code == 0 and out.startswith("TIMING") and "CONFIRMED_PAID" in out and "second operator" in out


def test_the_workflow_from_the_command_line(instance: Instance, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(instance.cfg.path)]
    v = instance.vouchers[0]
    b = str(instance.ids[("status_mismatch", key_of(v))])
    assert tgw(capsys, "breaks", "assign", *config, b, "--to", "cli:bob", "--as", "alice")[0] == 0
    assert tgw(capsys, "breaks", "comment", *config, b, "银行来函 letter 0815", "--as", "bob")[0] == 0
    code, out, _ = tgw(capsys, "breaks", "resolve", *config, b, "--reason", "CONFIRMED_PAID", "--as", "bob")
    assert code == 0 and "PROPOSED" in out and "second operator" in out

    code, _, err = tgw(capsys, "breaks", "approve", *config, b, "--as", "bob")
    assert code == 1 and "four eyes" in err
    with transaction(instance.engine, read_only=True) as conn:
        refusals = conn.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.outcome)).all()
    assert [tuple(r) for r in refusals] == [("cli:bob", "recon.approve", "refused")]

    code, out, _ = tgw(capsys, "breaks", "approve", *config, b, "--as", "carol", "--json")
    assert code == 0
    found = json.loads(out)
    assert (found["state"], found["resolution_state"], found["proposed_by"], found["approved_by"]) == (
        "CLOSED",
        "APPROVED",
        "cli:bob",
        "cli:carol",
    )
    assert [(e["event"], e["actor"]) for e in found["events"]] == [
        ("assigned", "cli:alice"),
        ("commented", "cli:bob"),
        ("proposed", "cli:bob"),
        ("approved", "cli:carol"),
    ]
    with transaction(instance.engine, read_only=True) as conn:
        state = conn.execute(select(vouchers.c.state).where(vouchers.c.voucher_no == v.voucher_no)).scalar_one()
    assert state == "PAID"
    code, _, err = tgw(capsys, "breaks", "comment", *config, b, "late", "--as", "carol")
    assert code == 1 and "closed" in err


def test_resolve_reject_and_the_default_actor(
    instance: Instance, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "ops01")
    config = ["--config", str(instance.cfg.path)]
    amount = str(instance.ids[("amount_mismatch", key_of(instance.vouchers[4]))])
    code, out, _ = tgw(capsys, "breaks", "resolve", *config, amount, "--reason", "VERIFIED", "--note", "手续费")
    assert code == 0 and "RESOLVED" in out and "closed" in out
    code, out, _ = tgw(capsys, "breaks", "list", *config, "--state", "RESOLVED", "--json")
    (resolved,) = json.loads(out)["breaks"]
    assert (resolved["key"], resolved["proposed_by"]) == (key_of(instance.vouchers[4]), "cli:ops01")

    paid = str(instance.ids[("status_mismatch", key_of(instance.vouchers[2]))])
    assert tgw(capsys, "breaks", "resolve", *config, paid, "--reason", "CONFIRMED_FAILED")[0] == 0
    code, out, _ = tgw(capsys, "breaks", "reject", *config, paid, "--reason", "no proof", "--as", "lead")
    assert code == 0 and "REJECTED" in out
    code, out, _ = tgw(capsys, "breaks", "list", *config, "--assigned-to", "nobody", "--state", "all", "--json")
    assert json.loads(out)["breaks"] == []

    code, _, err = tgw(capsys, "breaks", "resolve", *config, paid, "--reason", "NOPE")
    assert code == 1 and "unknown reason code" in err
    code, _, err = tgw(capsys, "breaks", "comment", *config, paid, "x", "--as", "not a name")
    assert code == 2 and "--as" in err
    with pytest.raises(SystemExit) as usage:
        cli.main(["breaks", "resolve", *config, paid])  # --reason missing
    assert usage.value.code == 2
    capsys.readouterr()
    code, _, _ = tgw(capsys, "breaks", "list", "--config", str(instance.cfg.directory / "missing.toml"))
    assert code == 2
