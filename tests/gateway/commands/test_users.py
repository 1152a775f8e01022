"""`tgw users`: accounts managed from the command line, every change audited."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import cli, metrics
from gateway import config as configuration
from gateway.auth import accounts, passwords
from gateway.dbthread import in_transaction
from gateway.store.db import create_engine_for


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("users") / "inst"
    assert cli.main(["init", str(directory), "--key-type", "ec", "--bank-port", "0", "--web-port", "0"]) == 0
    return directory / "gateway.toml"


def _tgw(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(list(argv))


def _store(config: Path, fn: Any, *args: Any) -> Any:
    engine = create_engine_for(configuration.load(config).database_url)
    try:
        return in_transaction(engine, fn, *args)
    finally:
        engine.dispose()


def test_add_passwd_disable_enable_role_list(
    instance: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(instance)
    assert (
        _tgw(
            monkeypatch,
            "users",
            "add",
            "--config",
            c,
            "dora",
            "--role",
            "operator",
            "--name",
            "多拉",
            "--password-stdin",
            stdin="first password 1\n",
        )
        == 0
    )
    assert (
        _tgw(
            monkeypatch,
            "users",
            "add",
            "--config",
            c,
            "dora",
            "--role",
            "viewer",
            "--password-stdin",
            stdin="first password 1\n",
        )
        == 1
    )
    assert "exists" in capsys.readouterr().err
    assert (
        _tgw(monkeypatch, "users", "add", "--config", c, "eve", "--role", "viewer", "--password-stdin", stdin="short\n")
        == 1
    )
    assert "at least" in capsys.readouterr().err
    assert (
        _tgw(monkeypatch, "users", "passwd", "--config", c, "dora", "--password-stdin", stdin="second password 2\n")
        == 0
    )
    assert _tgw(monkeypatch, "users", "disable", "--config", c, "dora") == 0
    assert _tgw(monkeypatch, "users", "enable", "--config", c, "dora") == 0
    assert _tgw(monkeypatch, "users", "role", "--config", c, "dora", "approver") == 0
    assert _tgw(monkeypatch, "users", "disable", "--config", c, "nobody") == 1
    capsys.readouterr()
    assert _tgw(monkeypatch, "users", "list", "--config", c, "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["username"], row["name"], row["role"], row["disabled"]) == ("dora", "多拉", "approver", False)
    stored = _store(instance, accounts.login_candidate, "dora", datetime(2026, 1, 1))
    assert passwords.verify_password("second password 2", stored.password_hash)
    actions = [e["action"] for e in _store(instance, accounts.list_audit)["entries"]]
    assert actions == ["user.role", "user.enable", "user.disable", "user.passwd", "user.add"]
    assert _tgw(monkeypatch, "users", "metrics-token", "--config", c) == 0
    token = capsys.readouterr().out.strip()
    assert _store(instance, metrics.check_token, token)
    assert not _store(instance, metrics.check_token, token + "x")
