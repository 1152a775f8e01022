"""`gateway.toml`: what `tgw init` renders loads back as given; defaults; paths relative to the instance; and
every bad value refused with a ConfigError that names the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import config as configuration
from gateway.config import (
    DEFAULT_BANK_PORT,
    DEFAULT_NODE,
    DEFAULT_WEB_PORT,
    ConfigError,
    PaymentSettings,
    SessionLimits,
)

RENDERED = configuration.render(
    node="450200000000",
    banks=[("ICBC", "standard"), ("CCB", "standard")],
    bank_port=17801,
    web_port=18780,
    database="sqlite:///gateway.db",
    api_token="s3cret-token",
)


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_what_render_writes_load_reads_back(tmp_path: Path) -> None:
    """Every value given to render comes back from load, typed."""
    cfg = configuration.load(write(tmp_path / "inst", RENDERED))
    directory = (tmp_path / "inst").resolve()
    assert cfg.directory == directory and cfg.path == directory / "gateway.toml"
    assert (cfg.node, cfg.bank_port, cfg.web_port, cfg.api_token) == ("450200000000", 17801, 18780, "s3cret-token")
    assert cfg.database_url == f"sqlite:///{directory / 'gateway.db'}"
    assert list(cfg.banks) == ["ICBC", "CCB"]
    assert cfg.banks["CCB"].dialect == "standard"
    assert cfg.banks["CCB"].signing_cert == directory / "pki/banks/CCB/cert.pem"
    assert cfg.banks["CCB"].name == "CCB"
    assert cfg.session.idle_timeout_s == 60.0 and isinstance(cfg.session.idle_timeout_s, float)
    assert (cfg.session.probe_timeout_s, cfg.session.max_in_flight) == (15.0, 256)
    assert (cfg.payments.receipt_deadline_s, cfg.payments.ack_timeout_s) == (300.0, 30.0)
    assert cfg.timezone == "Asia/Shanghai"


def test_render_writes_a_different_file_for_different_values() -> None:
    other = configuration.render(
        node="450100000000", banks=[], bank_port=1, web_port=2, database="postgresql://db/x", api_token="t"
    )
    assert other != RENDERED
    assert "[banks." not in other and 'database = "postgresql://db/x"' in other


def test_load_accepts_the_instance_directory(tmp_path: Path) -> None:
    write(tmp_path, RENDERED)
    assert configuration.load(tmp_path) == configuration.load(tmp_path / "gateway.toml")


def test_defaults_for_everything_but_the_token(tmp_path: Path) -> None:
    """A file naming only the API token is a complete configuration."""
    cfg = configuration.load(write(tmp_path, '[gateway]\napi_token = "t"\n'))
    directory = tmp_path.resolve()
    assert cfg.node == DEFAULT_NODE
    assert (cfg.bank_host, cfg.bank_port, cfg.web_host, cfg.web_port) == (
        "127.0.0.1",
        DEFAULT_BANK_PORT,
        "127.0.0.1",
        DEFAULT_WEB_PORT,
    )
    assert cfg.database_url == f"sqlite:///{directory / 'gateway.db'}"
    assert cfg.ca_cert == directory / "pki/ca.pem" and cfg.crl == directory / "pki/crl.pem"
    assert cfg.tls_cert == directory / "pki/gateway-tls-cert.pem"
    assert cfg.tls_key == directory / "pki/gateway-tls-key.pem"
    assert cfg.signing_cert == directory / "pki/gateway-signing-cert.pem"
    assert cfg.signing_key == directory / "pki/gateway-signing-key.pem"
    assert cfg.banks == {}
    assert cfg.session == SessionLimits() and cfg.payments == PaymentSettings()
    assert cfg.run_file == directory / "run.json"


def test_paths_are_relative_to_the_instance_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = RENDERED.replace('ca = "pki/ca.pem"', 'ca = "/etc/tgw/ca.pem"').replace(
        'crl = "pki/crl.pem"', 'crl = "../shared/crl.pem"'
    )
    path = write(tmp_path / "inst", text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = configuration.load(os.path.relpath(path, elsewhere))
    directory = (tmp_path / "inst").resolve()
    assert cfg.directory == directory
    assert cfg.tls_cert == directory / "pki/gateway-tls-cert.pem"
    assert cfg.ca_cert == Path("/etc/tgw/ca.pem")  # absolute paths are kept
    assert cfg.crl == directory / "../shared/crl.pem"
    assert cfg.database_url == f"sqlite:///{directory / 'gateway.db'}"


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("sqlite:////var/lib/tgw/gateway.db", "sqlite:////var/lib/tgw/gateway.db"),
        ("sqlite:///data/gw.db", "sqlite:///{dir}/data/gw.db"),
        ("postgresql://tgw@127.0.0.1:5432/tgw", "postgresql://tgw@127.0.0.1:5432/tgw"),
    ],
    ids=["absolute-sqlite", "relative-sqlite", "postgresql"],
)
def test_database_urls(tmp_path: Path, database: str, expected: str) -> None:
    """A relative SQLite path is the instance's; an absolute one and a server URL are kept."""
    cfg = configuration.load(write(tmp_path, RENDERED.replace("sqlite:///gateway.db", database)))
    assert cfg.database_url == expected.format(dir=tmp_path.resolve())


def test_integers_are_accepted_where_seconds_are_expected(tmp_path: Path) -> None:
    cfg = configuration.load(write(tmp_path, '[gateway]\napi_token = "t"\n[session]\nprobe_timeout_s = 2\n'))
    assert cfg.session.probe_timeout_s == 2.0 and isinstance(cfg.session.probe_timeout_s, float)


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tgw init"):
        configuration.load(tmp_path / "nowhere" / "gateway.toml")


def test_unreadable_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        configuration.load(write(tmp_path, "[gateway\napi_token = 't'\n"))


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes('[gateway]\napi_token = "口令"\n'.encode("gbk"))
    with pytest.raises(ConfigError, match="cannot read"):
        configuration.load(path)


def _with(section: str, line: str) -> str:
    """RENDERED with `line` put into `[section]` (replacing a line with the same key)."""
    key = line.split("=")[0].strip()
    lines = RENDERED.splitlines()
    start = lines.index(f"[{section}]")
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("[")), len(lines))
    body = [x for x in lines[start + 1 : end] if x.split("=")[0].strip() != key]
    return "\n".join([*lines[: start + 1], line, *body, *lines[end:]]) + "\n"


def _without(key: str) -> str:
    return "\n".join(x for x in RENDERED.splitlines() if x.split("=")[0].strip() != key) + "\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param(_without("api_token"), "gateway.api_token is missing", id="no-token"),
        pytest.param(_with("gateway", "node = 450100000000"), "gateway.node must be a str", id="node-not-text"),
        pytest.param(_with("gateway", "database = 5"), "gateway.database", id="database-not-text"),
        pytest.param(_with("listen", 'bank_port = "7801"'), "listen.bank_port must be a int", id="port-as-text"),
        pytest.param(_with("listen", "web_port = true"), "listen.web_port", id="port-as-bool"),
        pytest.param(_with("listen", "web_host = 127"), "listen.web_host", id="host-not-text"),
        pytest.param(_with("pki", "ca = 1"), "pki.ca", id="pki-path-not-text"),
        pytest.param(_with("session", 'idle_timeout_s = "60"'), "session.idle_timeout_s", id="seconds-as-text"),
        pytest.param(_with("session", "idle_timeout_s = 0"), "session.idle_timeout_s must be positive", id="zero"),
        pytest.param(_with("session", "probe_timeout_s = -1"), "session.probe_timeout_s must be positive", id="neg"),
        pytest.param(_with("session", "max_in_flight = 1.5"), "session.max_in_flight", id="count-as-float"),
        pytest.param(_with("session", "max_in_flight = true"), "session.max_in_flight", id="count-as-bool"),
        pytest.param(_with("session", "idle_timeout = 60"), "unknown setting session.idle_timeout", id="typo"),
        pytest.param(_with("payments", "ack_timeout_s = 0"), "payments.ack_timeout_s must be positive", id="pay-0"),
        pytest.param(_with("payments", "retries = 3"), "unknown setting payments.retries", id="pay-typo"),
        pytest.param(_with("banks.ICBC", "dialect = 7"), "banks.ICBC.dialect must be a str", id="dialect-not-text"),
        pytest.param(_with("banks.CCB", "signing_cert = []"), "banks.CCB.signing_cert", id="cert-not-text"),
        pytest.param(
            _with("listen", "bank_port = 70000"),
            "listen.bank_port",
            id="port-out-of-range",
        ),
        pytest.param(
            _with("banks.ICBC", 'dialect = "nosuch"'),
            "banks.ICBC.dialect",
            id="unknown-dialect",
        ),
        pytest.param(
            _with("gateway", 'timezone = "Mars/Olympus"'),
            "gateway.timezone",
            id="unknown-timezone",
        ),
        pytest.param(
            _with("gateway", 'api_token = ""'),
            "gateway.api_token",
            id="empty-token",
        ),
        pytest.param(
            _with("gateway", 'node = "4501"'),
            "gateway.node",
            id="node-not-12-digits",
        ),
        pytest.param(
            _with("listen", "bank-port = 9000"),
            "listen.bank-port",
            id="listen-typo",
        ),
        pytest.param(
            "gateway = 5\n",
            "gateway",
            id="section-not-a-table",
        ),
        pytest.param(_with("listen", "web_port = -1"), "listen.web_port", id="negative-port"),
        pytest.param(_with("gateway", 'node = "450100"'), "gateway.node", id="node-of-6-digits"),
        pytest.param(_with("gateway", 'node = "45010000000A"'), "gateway.node", id="node-not-digits"),
        pytest.param(_with("gateway", 'api_token = "  "'), "gateway.api_token", id="blank-token"),
        pytest.param(_with("gateway", 'timezone = ""'), "gateway.timezone", id="empty-timezone"),
        pytest.param(_with("gateway", 'time_zone = "UTC"'), "unknown setting gateway.time_zone", id="gateway-typo"),
        pytest.param(_with("pki", 'signing-key = "k.pem"'), "unknown setting pki.signing-key", id="pki-typo"),
        pytest.param(_with("pki", "alt_signing_cert = 1"), "pki.alt_signing_cert", id="alt-cert-not-text"),
        pytest.param(_with("banks.CCB", 'dialekt = "ccb"'), "unknown setting banks.CCB.dialekt", id="bank-typo"),
        pytest.param(RENDERED + "[banks]\nABC = 1\n", "banks.ABC", id="bank-not-a-table"),
        pytest.param('banks = "ICBC"\n[gateway]\napi_token = "t"\n', "banks", id="banks-not-a-table"),
        pytest.param("session = []\n" + RENDERED.replace("[session]", "[other]"), "session", id="limits-not-a-table"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        configuration.load(write(tmp_path, text))
    assert named in str(info.value)
