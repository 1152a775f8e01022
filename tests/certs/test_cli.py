"""certs.cli: the `pki` command group, run in-process through a parser built the way gateway/cli.py builds it."""

from __future__ import annotations

import argparse
import stat
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from certs import cli, pki
from certs.store import PkiDirectory
from tests.certs.conftest import NODE, NOW

Runner = Callable[..., int]


class FixedClock:
    """A settable clock for the CLI (the only wall-clock reader of the package)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    """A clock at NOW that a test may move."""
    return FixedClock(NOW)


@pytest.fixture
def run(clock: FixedClock) -> Runner:
    """Parse a `pki …` command line with a fresh parser and call its handler; returns the exit code."""

    def _run(*argv: str) -> int:
        parser = argparse.ArgumentParser(prog="tgw")
        sub = parser.add_subparsers(dest="command")
        cli.register(sub, clock=clock)
        args = parser.parse_args(["pki", *argv])
        code: int = args.func(args)
        return code

    return _run


def test_init_creates_pki(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pki init` writes a complete PKI with one certificate per --bank and returns 0."""
    target = tmp_path / "pki"
    assert run("init", str(target), "--node", NODE, "--bank", "ICBC", "CCB", "--bank", "ABC", "--key-type", "ec") == 0
    store = PkiDirectory(target)
    assert store.bank_codes() == ["ABC", "CCB", "ICBC"]
    assert stat.S_IMODE(store.ca_key_path.stat().st_mode) == 0o600
    assert store.load_ca_cert().not_valid_before_utc == NOW - pki.BACKDATE  # the injected clock was used
    assert pki.key_type_of(store.load_ca_cert().public_key()) is pki.KeyType.EC
    assert "created a ec PKI" in capsys.readouterr().out


def test_init_twice_fails_plainly(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second init returns non-zero with a one-line explanation on stderr, no traceback."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 0
    capsys.readouterr()
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 1
    err = capsys.readouterr().err
    assert "already holds a CA" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_init_with_passphrase_env(
    run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--passphrase-env encrypts the keys; later commands need the same variable, and an unset one is an error."""
    monkeypatch.setenv("TGW_PKI_PASS", "s3cret")
    assert (
        run(
            "init",
            str(tmp_path),
            "--node",
            NODE,
            "--bank",
            "ICBC",
            "--key-type",
            "ec",
            "--passphrase-env",
            "TGW_PKI_PASS",
        )
        == 0
    )
    assert PkiDirectory(tmp_path).load_bank_key("ICBC", "s3cret") is not None
    capsys.readouterr()
    assert run("issue-bank", str(tmp_path), "CCB") == 1
    assert "passphrase is required" in capsys.readouterr().err
    assert run("issue-bank", str(tmp_path), "CCB", "--passphrase-env", "UNSET_VAR_FOR_TEST") == 1
    assert "UNSET_VAR_FOR_TEST" in capsys.readouterr().err
    assert run("issue-bank", str(tmp_path), "CCB", "--passphrase-env", "TGW_PKI_PASS") == 0


def test_issue_bank_and_revoke_old(
    run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FixedClock
) -> None:
    """issue-bank replaces a bank's certificate and says how to revoke the old one; revoke --serial does it."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 0
    store = PkiDirectory(tmp_path)
    old = store.load_bank_cert("ICBC")
    clock.now = NOW + timedelta(days=1)
    capsys.readouterr()
    assert run("issue-bank", str(tmp_path), "ICBC", "--key-type", "rsa") == 0
    out = capsys.readouterr().out
    assert f"--serial {old.serial_number}" in out
    new = store.load_bank_cert("ICBC")
    assert pki.key_type_of(new.public_key()) is pki.KeyType.RSA
    assert run("revoke", str(tmp_path), "--serial", hex(old.serial_number), "--reason", "superseded") == 0
    crl = store.crl()
    assert pki.is_revoked(crl, old) and not pki.is_revoked(crl, new)


def test_revoke_bank_and_print_crl(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """revoke --bank lists the bank's certificate in the CRL, and `pki crl` prints its serial and reason."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "CCB", "--key-type", "ec") == 0
    store = PkiDirectory(tmp_path)
    icbc, ccb = store.load_bank_cert("ICBC"), store.load_bank_cert("CCB")
    assert run("revoke", str(tmp_path), "--bank", "ICBC", "--reason", "key-compromise") == 0
    capsys.readouterr()
    assert run("crl", str(tmp_path)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert lines == [f"{icbc.serial_number}\t{NOW:%Y-%m-%dT%H:%M:%SZ}\tkeyCompromise"]
    assert str(ccb.serial_number) not in "\n".join(lines)


def test_revoke_twice_reports_already_revoked(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Revoking the same bank again succeeds and says it was already revoked."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 0
    assert run("revoke", str(tmp_path), "--bank", "ICBC") == 0
    capsys.readouterr()
    assert run("revoke", str(tmp_path), "--bank", "ICBC", "--reason", "keyCompromise") == 0
    assert "already revoked" in capsys.readouterr().out
    assert len(PkiDirectory(tmp_path).crl()) == 1


def test_revoke_errors(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown bank or reason returns 1 with the reason on stderr; a malformed serial is a usage error."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 0
    capsys.readouterr()
    assert run("revoke", str(tmp_path), "--bank", "BOC") == 1
    assert "banks/BOC/cert.pem" in capsys.readouterr().err
    assert run("revoke", str(tmp_path), "--bank", "ICBC", "--reason", "stolen") == 1
    assert "unknown revocation reason" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("revoke", str(tmp_path), "--serial", "12ab")
    with pytest.raises(SystemExit):
        run("revoke", str(tmp_path), "--bank", "ICBC", "--serial", "5")


def test_crl_refresh_and_stale_warning(
    run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FixedClock
) -> None:
    """`pki crl` warns when the CRL is past nextUpdate; --refresh re-signs it and the warning goes away."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 0
    clock.now = NOW + pki.DEFAULT_CRL_VALIDITY + timedelta(days=1)
    capsys.readouterr()
    assert run("crl", str(tmp_path)) == 0
    assert "expired" in capsys.readouterr().err
    assert run("crl", str(tmp_path), "--refresh") == 0
    assert capsys.readouterr().err == ""
    assert PkiDirectory(tmp_path).crl().last_update_utc == clock.now


def test_show_bank_cert(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pki show` prints subject, bank code, serial, validity and key type."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "rsa") == 0
    cert = PkiDirectory(tmp_path).load_bank_cert("ICBC")
    capsys.readouterr()
    assert run("show", str(tmp_path / "banks" / "ICBC" / "cert.pem")) == 0
    out = capsys.readouterr().out
    assert f"subject:     CN=ICBC,O={pki.BANK_ORGANIZATION}" in out
    assert "bank code:   ICBC\n" in out
    assert f"serial:      {cert.serial_number}" in out
    assert f"not after:   {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}" in out
    assert "key type:    rsa 2048" in out


def test_show_non_bank_and_missing(run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show says a gateway certificate is not a bank's; a missing file returns 1 naming it."""
    assert run("init", str(tmp_path), "--node", NODE, "--bank", "ICBC", "--key-type", "ec") == 0
    capsys.readouterr()
    assert run("show", str(tmp_path / "gateway-signing-cert.pem")) == 0
    out = capsys.readouterr().out
    assert "not a bank certificate" in out and "ec secp256r1" in out
    assert run("show", str(tmp_path / "nope.pem")) == 1
    assert "nope.pem: no such file" in capsys.readouterr().err


def test_pki_without_command_prints_help(run: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    """`pki` alone prints the group's help to stderr and returns 2."""
    assert run() == 2
    assert "issue-bank" in capsys.readouterr().err


def test_register_returns_pki_parser() -> None:
    """register adds exactly a `pki` command and every handler is reachable through args.func."""
    parser = argparse.ArgumentParser(prog="tgw")
    sub = parser.add_subparsers(dest="command")
    pki_parser = cli.register(sub)
    assert pki_parser.prog == "tgw pki"
    for argv in (["init", "d", "--node", NODE, "--bank", "X"], ["issue-bank", "d", "X"], ["crl", "d"], ["show", "f"]):
        assert callable(parser.parse_args(["pki", *argv]).func)
