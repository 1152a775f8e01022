"""`[reconciliation]` in gateway.toml: the nightly run's settings, their defaults, and every bad value refused
with a ConfigError naming the setting (gateway.config)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from gateway import config as configuration
from gateway.config import ConfigError, ReconSettings

RENDERED = configuration.render(
    node="450100000000",
    banks=[("ICBC", "standard")],
    bank_port=0,
    web_port=0,
    database="sqlite:///gateway.db",
    api_token="token",
)


def _load(tmp_path: Path, section: str, gateway: str = "") -> configuration.Config:
    text = RENDERED.replace("[reconciliation]\n", f"[reconciliation]\n{section}\n")
    if gateway:
        text = text.replace("[gateway]\n", f"[gateway]\n{gateway}\n").replace('timezone = "Asia/Shanghai"\n', "", 1)
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return configuration.load(path)


def test_tgw_init_writes_the_section_with_its_defaults_commented(tmp_path: Path) -> None:
    lines = RENDERED.splitlines()
    start = lines.index("[reconciliation]")
    body = lines[start + 1 : next((n for n in range(start + 1, len(lines)) if lines[n].startswith("[")), len(lines))]
    settings = [line.removeprefix("# ").split(" = ")[0] for line in body if " = " in line]
    nightly = ["nightly_enabled", "nightly_at", "timezone", "retry_after_s", "max_attempts", "lease_s"]
    assert [name for name in settings if name in nightly] == nightly  # together, with the other groups' settings
    assert all(line.startswith("#") or not line for line in body)  # commented: the defaults apply
    uncommented = "\n".join(line.removeprefix("# ").split("  #")[0] if " = " in line else line for line in body)
    assert _load(tmp_path, uncommented).reconciliation == _load(tmp_path, "").reconciliation == ReconSettings()


def test_defaults(tmp_path: Path) -> None:
    nightly = _load(tmp_path, "").reconciliation
    assert (nightly.nightly_enabled, nightly.nightly_at, nightly.timezone) == (True, time(2, 0), "Asia/Shanghai")
    assert (nightly.retry_after_s, nightly.lease_s, nightly.max_attempts) == (600.0, 600.0, 3)


def test_settings_read_back(tmp_path: Path) -> None:
    nightly = _load(
        tmp_path,
        'nightly_enabled = false\nnightly_at = "23:45"\ntimezone = "UTC"\nretry_after_s = 60\nlease_s = 30\n'
        "max_attempts = 1\nstatement_timeout_s = 120",
    ).reconciliation
    assert (nightly.nightly_enabled, nightly.nightly_at, nightly.timezone) == (False, time(23, 45), "UTC")
    assert (nightly.retry_after_s, nightly.lease_s, nightly.max_attempts) == (60.0, 30.0, 1)
    assert nightly.statement_timeout_s == 120.0 and isinstance(nightly.retry_after_s, float)


def test_the_time_zone_defaults_to_the_gateways(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "", gateway='timezone = "Europe/London"')
    assert (cfg.timezone, cfg.reconciliation.timezone) == ("Europe/London", "Europe/London")
    assert _load(tmp_path, 'timezone = ""', gateway='timezone = "Asia/Tokyo"').reconciliation.timezone == "Asia/Tokyo"
    assert _load(tmp_path, 'timezone = "UTC"', gateway='timezone = "Asia/Tokyo"').reconciliation.timezone == "UTC"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('nightly_at = "2:00"', "reconciliation.nightly_at must be a local time HH:MM"),
        ('nightly_at = "24:00"', "reconciliation.nightly_at"),
        ('nightly_at = "02:60"', "reconciliation.nightly_at"),
        ('nightly_at = "02:00:00"', "reconciliation.nightly_at"),
        ("nightly_at = 02:00:00", "reconciliation.nightly_at must be a str"),
        ("nightly_at = 200", "reconciliation.nightly_at must be a str"),
        ('nightly_enabled = "yes"', "reconciliation.nightly_enabled must be a bool"),
        ("nightly_enabled = 1", "reconciliation.nightly_enabled must be a bool"),
        ('timezone = "Mars/Olympus"', "reconciliation.timezone: no time zone 'Mars/Olympus'"),
        ('timezone = "../etc/passwd"', "reconciliation.timezone"),
        ("retry_after_s = 0", "reconciliation.retry_after_s must be a positive number of seconds"),
        ("retry_after_s = -5", "reconciliation.retry_after_s"),
        ("retry_after_s = inf", "reconciliation.retry_after_s"),
        ("retry_after_s = nan", "reconciliation.retry_after_s"),
        ('retry_after_s = "600"', "reconciliation.retry_after_s must be a float"),
        ("lease_s = 10", "reconciliation.lease_s must be at least 30 seconds"),
        ("lease_s = inf", "reconciliation.lease_s"),
        ("max_attempts = 0", "reconciliation.max_attempts must be 1-100"),
        ("max_attempts = 101", "reconciliation.max_attempts"),
        ("max_attempts = 1.5", "reconciliation.max_attempts must be a int"),
        ("max_attempts = true", "reconciliation.max_attempts"),
        ('nightly_time = "02:00"', "unknown setting reconciliation.nightly_time"),
        ("statement_timeout_s = 0", "reconciliation.statement_timeout_s must be positive"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(tmp_path: Path, line: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, line)
    assert named in str(info.value)


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('reconciliation = "nightly"\n[gateway]\napi_token = "t"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[reconciliation\] must be a table"):
        configuration.load(path)
