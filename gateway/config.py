"""An instance's configuration: `DIR/gateway.toml`, read once at start, every value typed and checked.

Paths in the file are relative to the instance directory. Every limit has a name ending in its unit and a
default that a development instance can run with.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from banks import registry

DEFAULT_NODE = "450100000000"
DEFAULT_BANK_PORT = 7801
DEFAULT_WEB_PORT = 8780


class ConfigError(Exception):
    """The configuration file is missing, unreadable or has a wrong value (the message names it)."""


@dataclass(frozen=True, slots=True)
class BankConfig:
    """One agent bank: its code, dialect, and the certificate its messages are verified with (pinned)."""

    code: str
    dialect: str
    signing_cert: Path
    name: str = ""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-session caps and timers (PROTOCOL.md §2)."""

    idle_timeout_s: float = 60.0
    probe_timeout_s: float = 15.0
    sign_on_timeout_s: float = 30.0
    max_in_flight: int = 256
    max_frame_bytes: int = 4 * 1024 * 1024
    max_write_buffer_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """Deadlines and resend policy."""

    receipt_deadline_s: float = 300.0
    ack_timeout_s: float = 30.0
    resend_backoff_initial_s: float = 30.0  # the wait after the first resend; then doubling (docs/protocol.md §7)
    resend_backoff_max_s: float = 60.0
    status_query_interval_s: float = 60.0
    tick_s: float = 1.0


@dataclass(frozen=True, slots=True)
class CardSettings:
    """Official-card repayment (issue 5, docs/cards.md): `[cards]` in gateway.toml, every key optional.

    `adm_div_code` is the `AdmDivCode` of repayment vouchers and of the quota they draw on; empty means the
    first six digits of the node code (the finance bureau's administrative division, PROTOCOL.md §3).
    """

    due_lead_days: int = 5  # a record is "due" this many days before its LimitDate, "overdue" after it
    check_interval_s: float = 60.0  # how often the deadline watch looks (and logs what became due)
    max_details: int = 50  # spending records repaid by one voucher at most
    adm_div_code: str = ""


@dataclass(frozen=True, slots=True)
class ReconSettings:
    """Reconciliation (issue 6, docs/reconciliation.md): `[reconciliation]` in gateway.toml, every key optional.

    Each group of settings belongs to one part of the reconciliation; keep a group's fields together.
    """

    # --- statements over the link (4005 → 4006 pages → 2507; gateway/reconcile/link.py) ---
    #: How long a reconciliation over the link (the API, `tgw reconcile` without `--statement`, the nightly
    #: run) waits for the bank's complete statement and its run; then the request is FAILED.
    statement_timeout_s: float = 600.0

    # --- the nightly run (gateway/reconcile/scheduler.py; docs/reconciliation.md, "Scheduling") ---
    #: At `nightly_at` local time in `timezone` (empty or absent in the file: `[gateway] timezone`), `tgw run`
    #: reconciles every bank's previous work date, once per bank and date across restarts and gateway processes
    #: sharing the database. A failed bank is tried again after `retry_after_s`, `max_attempts` times in all; a
    #: process holds a bank's run for `lease_s` at a time (renewed while it runs), after which another process
    #: may take over a run whose process died.
    nightly_enabled: bool = True
    nightly_at: time = time(2, 0)
    timezone: str = "Asia/Shanghai"
    retry_after_s: float = 600.0
    lease_s: float = 600.0
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class Config:
    """A whole instance."""

    directory: Path
    node: str
    database_url: str
    bank_host: str
    bank_port: int
    web_host: str
    web_port: int
    ca_cert: Path
    crl: Path
    tls_cert: Path
    tls_key: Path
    signing_cert: Path
    signing_key: Path
    api_token: str
    timezone: str = "Asia/Shanghai"
    #: A second message-signing pair of the other key type (RSA / P-256), for dialects that need it.
    alt_signing_cert: Path | None = None
    alt_signing_key: Path | None = None
    banks: dict[str, BankConfig] = field(default_factory=dict)
    session: SessionLimits = field(default_factory=SessionLimits)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    cards: CardSettings = field(default_factory=CardSettings)
    reconciliation: ReconSettings = field(default_factory=ReconSettings)

    def signing_pairs(self) -> list[tuple[Path, Path]]:
        """The gateway's message-signing (certificate, key) pairs: the default first, then the other type's."""
        pairs = [(self.signing_cert, self.signing_key)]
        if self.alt_signing_cert is not None and self.alt_signing_key is not None and self.alt_signing_cert.exists():
            pairs.append((self.alt_signing_cert, self.alt_signing_key))
        return pairs

    @property
    def path(self) -> Path:
        """The configuration file."""
        return self.directory / "gateway.toml"

    @property
    def run_file(self) -> Path:
        """Where a running gateway writes its pid and the ports it actually listens on."""
        return self.directory / "run.json"


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in table:
        if default is None:
            raise ConfigError(f"{where}.{key} is missing")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{where}.{key} must be a {kind.__name__}, not {value!r}")
    return value


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """The table `key` of `data` (empty when absent); anything else there is refused naming `where`."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] must be a table, not {value!r}")
    return value


def _known(table: dict[str, Any], names: set[str], where: str) -> None:
    """Refuse a key that is no setting of the table (a typo would otherwise leave the default silently)."""
    unknown = set(table) - names
    if unknown:
        raise ConfigError(f"unknown setting {where}.{sorted(unknown)[0]}")


def _port(table: dict[str, Any], key: str, where: str, default: int) -> int:
    value: int = _get(table, key, int, where, default)
    if not 0 <= value <= 65535:
        raise ConfigError(f"{where}.{key} must be a TCP port, 0-65535, not {value}")
    return value


def _limits(cls: type[Any], table: dict[str, Any], where: str) -> Any:
    defaults = cls()
    values = {}
    for name in cls.__dataclass_fields__:
        default = getattr(defaults, name)
        values[name] = _get(table, name, type(default), where, default)
        if values[name] <= 0:
            raise ConfigError(f"{where}.{name} must be positive")
    unknown = set(table) - set(values)
    if unknown:
        raise ConfigError(f"unknown setting {where}.{sorted(unknown)[0]}")
    return cls(**values)


def _cards(table: dict[str, Any], node: str) -> CardSettings:
    numbers = {k: v for k, v in table.items() if k != "adm_div_code"}
    settings: _CardNumbers = _limits(_CardNumbers, numbers, "cards")
    adm_div_code = _get(table, "adm_div_code", str, "cards", "") or node[:6]
    if not (adm_div_code.isascii() and adm_div_code.isdigit() and 6 <= len(adm_div_code) <= 12):
        raise ConfigError(f"cards.adm_div_code must be 6-12 digits, not {adm_div_code!r}")
    return CardSettings(
        due_lead_days=settings.due_lead_days,
        check_interval_s=settings.check_interval_s,
        max_details=min(settings.max_details, 1000),
        adm_div_code=adm_div_code,
    )


@dataclass(frozen=True, slots=True)
class _CardNumbers:
    """The numeric `[cards]` settings, checked like every other limit (typed, positive); defaults as above."""

    due_lead_days: int = 5
    check_interval_s: float = 60.0
    max_details: int = 50


#: The settings of `[reconciliation]` that concern the nightly run (:class:`ReconSettings`).
_NIGHTLY = ("nightly_enabled", "nightly_at", "timezone", "retry_after_s", "lease_s", "max_attempts")
#: Bounds of the nightly run's numbers: a lease renewed every third of itself needs a few seconds at least.
NIGHTLY_LEASE_S_MIN = 30.0
NIGHTLY_ATTEMPTS_MAX = 100


def _reconciliation(table: dict[str, Any], gateway_timezone: str) -> ReconSettings:
    """`[reconciliation]`, each setting typed and checked (the message names the setting): the numbers of the
    other groups are limits (positive), the nightly run's settings are checked one by one."""
    where = "reconciliation"
    _known(table, set(ReconSettings.__dataclass_fields__), where)
    defaults = ReconSettings()
    values: dict[str, Any] = {}
    for name in ReconSettings.__dataclass_fields__:
        if name not in _NIGHTLY:
            default = getattr(defaults, name)
            values[name] = _get(table, name, type(default), where, default)
            if not 0 < values[name] < math.inf:
                raise ConfigError(f"{where}.{name} must be positive")
    enabled: bool = _get(table, "nightly_enabled", bool, where, defaults.nightly_enabled)
    at_text: str = _get(table, "nightly_at", str, where, "02:00")
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", at_text)
    if match is None:
        raise ConfigError(
            f'{where}.nightly_at must be a local time HH:MM, 00:00-23:59 (for example "02:00"), not {at_text!r}'
        )
    timezone: str = _get(table, "timezone", str, where, "") or gateway_timezone
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone: no time zone {timezone!r} (for example Asia/Shanghai)") from None
    retry_after_s: float = _get(table, "retry_after_s", float, where, defaults.retry_after_s)
    if not 0 < retry_after_s < math.inf:
        raise ConfigError(f"{where}.retry_after_s must be a positive number of seconds, not {retry_after_s}")
    lease_s: float = _get(table, "lease_s", float, where, defaults.lease_s)
    if not NIGHTLY_LEASE_S_MIN <= lease_s < math.inf:
        raise ConfigError(f"{where}.lease_s must be at least {NIGHTLY_LEASE_S_MIN:g} seconds, not {lease_s}")
    max_attempts: int = _get(table, "max_attempts", int, where, defaults.max_attempts)
    if not 1 <= max_attempts <= NIGHTLY_ATTEMPTS_MAX:
        raise ConfigError(f"{where}.max_attempts must be 1-{NIGHTLY_ATTEMPTS_MAX}, not {max_attempts}")
    return ReconSettings(
        **values,
        nightly_enabled=enabled,
        nightly_at=time(int(match.group(1)), int(match.group(2))),
        timezone=timezone,
        retry_after_s=retry_after_s,
        lease_s=lease_s,
        max_attempts=max_attempts,
    )


def load(path: Path | str) -> Config:
    """Read and check a `gateway.toml`.

    Raises:
        ConfigError: the file is missing or any value is wrong; the message names the setting.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "gateway.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no configuration at {path} (create one with `tgw init DIR`)") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    directory = path.parent.resolve()

    def rel(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else directory / p

    def rel_or_none(value: str) -> Path | None:
        return rel(value) if value else None

    gw = _table(data, "gateway", "gateway")
    listen = _table(data, "listen", "listen")
    pki = _table(data, "pki", "pki")
    _known(gw, {"node", "database", "timezone", "api_token"}, "gateway")
    _known(listen, {"bank_host", "bank_port", "web_host", "web_port"}, "listen")
    _known(pki, set(_PKI), "pki")
    database = _get(gw, "database", str, "gateway", "sqlite:///gateway.db")
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        database = f"sqlite:///{rel(database.removeprefix('sqlite:///'))}"
    banks = {}
    for code in _table(data, "banks", "banks"):
        where = f"banks.{code}"
        table = _table(data["banks"], code, where)
        _known(table, {"dialect", "signing_cert", "name"}, where)
        dialect = _get(table, "dialect", str, where, "standard")
        if dialect not in registry.DIALECTS:
            raise ConfigError(f"{where}.dialect: {registry.UnknownDialect(dialect)}")
        banks[code] = BankConfig(
            code=code,
            dialect=dialect,
            signing_cert=rel(_get(table, "signing_cert", str, where, f"pki/banks/{code}/cert.pem")),
            name=_get(table, "name", str, where, code),
        )
    node = _get(gw, "node", str, "gateway", DEFAULT_NODE)
    if not re.fullmatch(r"[0-9]{12}", node):
        raise ConfigError(f"gateway.node must be 12 digits (the division code padded with zeros), not {node!r}")
    timezone = _get(gw, "timezone", str, "gateway", "Asia/Shanghai")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"gateway.timezone: no time zone {timezone!r} (for example Asia/Shanghai)") from None
    api_token = _get(gw, "api_token", str, "gateway")
    if not api_token.strip():
        raise ConfigError("gateway.api_token must not be empty (the HTTP API would admit 'Bearer ' alone)")
    return Config(
        directory=directory,
        node=node,
        database_url=database,
        timezone=timezone,
        api_token=api_token,
        bank_host=_get(listen, "bank_host", str, "listen", "127.0.0.1"),
        bank_port=_port(listen, "bank_port", "listen", DEFAULT_BANK_PORT),
        web_host=_get(listen, "web_host", str, "listen", "127.0.0.1"),
        web_port=_port(listen, "web_port", "listen", DEFAULT_WEB_PORT),
        ca_cert=rel(_get(pki, "ca", str, "pki", "pki/ca.pem")),
        crl=rel(_get(pki, "crl", str, "pki", "pki/crl.pem")),
        tls_cert=rel(_get(pki, "tls_cert", str, "pki", "pki/gateway-tls-cert.pem")),
        tls_key=rel(_get(pki, "tls_key", str, "pki", "pki/gateway-tls-key.pem")),
        signing_cert=rel(_get(pki, "signing_cert", str, "pki", "pki/gateway-signing-cert.pem")),
        signing_key=rel(_get(pki, "signing_key", str, "pki", "pki/gateway-signing-key.pem")),
        alt_signing_cert=rel_or_none(_get(pki, "alt_signing_cert", str, "pki", "")),
        alt_signing_key=rel_or_none(_get(pki, "alt_signing_key", str, "pki", "")),
        banks=banks,
        session=_limits(SessionLimits, _table(data, "session", "session"), "session"),
        payments=_limits(PaymentSettings, _table(data, "payments", "payments"), "payments"),
        cards=_cards(_table(data, "cards", "cards"), node),
        reconciliation=_reconciliation(_table(data, "reconciliation", "reconciliation"), timezone),
    )


#: The settings of `[pki]`: the bank CA and its CRL, the gateway's TLS pair, its message-signing pair and
#: optionally a second signing pair of the other key type.
_PKI = ("ca", "crl", "tls_cert", "tls_key", "signing_cert", "signing_key", "alt_signing_cert", "alt_signing_key")


def render(
    *,
    node: str,
    banks: list[tuple[str, str]],
    bank_port: int,
    web_port: int,
    database: str,
    api_token: str,
) -> str:
    """The text of a new instance's `gateway.toml` (written by `tgw init`)."""
    lines = [
        "# Treasury payment gateway instance. Paths are relative to this file's directory.",
        "[gateway]",
        f'node = "{node}"',
        f'database = "{database}"',
        'timezone = "Asia/Shanghai"',
        "# Bearer token of the finance-side HTTP API (generated by tgw init; keep it secret).",
        f'api_token = "{api_token}"',
        "",
        "[listen]",
        'bank_host = "127.0.0.1"',
        f"bank_port = {bank_port}",
        'web_host = "127.0.0.1"',
        f"web_port = {web_port}",
        "",
        "[pki]",
        'ca = "pki/ca.pem"',
        'crl = "pki/crl.pem"',
        'tls_cert = "pki/gateway-tls-cert.pem"',
        'tls_key = "pki/gateway-tls-key.pem"',
        'signing_cert = "pki/gateway-signing-cert.pem"',
        'signing_key = "pki/gateway-signing-key.pem"',
        "# the other key type's signing pair, for bank dialects whose signature scheme needs it",
        'alt_signing_cert = "pki/gateway-signing-alt-cert.pem"',
        'alt_signing_key = "pki/gateway-signing-alt-key.pem"',
        "",
        "[session]",
        "idle_timeout_s = 60",
        "probe_timeout_s = 15",
        "max_in_flight = 256",
        "",
        "[payments]",
        "receipt_deadline_s = 300",
        "ack_timeout_s = 30",
        "",
        "[cards]",
        "# official-card spending is raised as due this many days before its repayment deadline (LimitDate)",
        "due_lead_days = 5",
        "",
        "[reconciliation]",
        "# The nightly run (日终对账, docs/reconciliation.md): at nightly_at local time, every bank's previous work",
        "# date, once per bank and date even with several gateways on one database. The defaults:",
        "# nightly_enabled = true",
        '# nightly_at = "02:00"',
        '# timezone = "Asia/Shanghai"  # empty or absent: [gateway] timezone',
        "# retry_after_s = 600  # a failed bank is tried again after this long ...",
        "# max_attempts = 3  # ... this many times in all",
        "# lease_s = 600  # a run is held this long at a time, renewed while it runs; then another may take over",
        "# Statements over the link (4005 → 4006 pages → 2507): how long a reconciliation waits for the bank's",
        "# complete statement and its run before the request fails.",
        "# statement_timeout_s = 600",
    ]
    for code, dialect in banks:
        lines += ["", f"[banks.{code}]", f'dialect = "{dialect}"', f'signing_cert = "pki/banks/{code}/cert.pem"']
    return "\n".join(lines) + "\n"
