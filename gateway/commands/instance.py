"""Operator commands for an instance: `tgw init`, `run`, `submit`, `voucher`, `vouchers`.

These are the stable scripting interface of the gateway (README "Operator's command line"): later tools and
tests drive the gateway through them, so their options and JSON output only grow, never change.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certs.pki import KeyType, PkiError
from certs.store import PkiDirectory
from gateway import config as configuration
from gateway.config import ConfigError
from protocols.messages import VoucherKey
from protocols.money import format_amount_fen

DEFAULT_NODE = configuration.DEFAULT_NODE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create an instance: gateway.toml, the development PKI, the database")
    p.add_argument("dir", type=Path)
    p.add_argument(
        "--bank",
        action="append",
        default=[],
        metavar="CODE[:DIALECT]",
        help="an agent bank (repeat); DIALECT defaults to standard",
    )
    p.add_argument("--node", default=DEFAULT_NODE, help=f"the gateway's node code (default {DEFAULT_NODE})")
    p.add_argument("--bank-port", type=int, default=configuration.DEFAULT_BANK_PORT, help="0: any free port")
    p.add_argument("--web-port", type=int, default=configuration.DEFAULT_WEB_PORT, help="0: any free port")
    p.add_argument("--database", default="sqlite:///gateway.db", help="SQLAlchemy URL (default: SQLite in DIR)")
    p.add_argument("--key-type", choices=[k.value for k in KeyType], default="rsa")
    p.set_defaults(func=init)

    r = sub.add_parser("run", help="run the gateway in the foreground (SIGTERM drains and stops)")
    r.add_argument("--config", required=True, type=Path)
    r.add_argument("--log-level", default="INFO")
    r.set_defaults(func=run)

    s = sub.add_parser("submit", help="submit vouchers from an XML or JSON file to the running gateway")
    s.add_argument("--config", required=True, type=Path)
    s.add_argument("--bank", help="the bank, where the file does not name it")
    s.add_argument("--json", action="store_true")
    s.add_argument("file", type=Path)
    s.set_defaults(func=submit)

    v = sub.add_parser("voucher", help="one voucher with its timeline")
    v.add_argument("--config", required=True, type=Path)
    v.add_argument("--json", action="store_true")
    v.add_argument("key", help="ADMDIV-YEAR-VTCODE-VOUCHERNO (as `tgw vouchers` prints)")
    v.set_defaults(func=show_voucher)

    ls = sub.add_parser("vouchers", help="list vouchers")
    ls.add_argument("--config", required=True, type=Path)
    ls.add_argument("--state")
    ls.add_argument("--bank")
    ls.add_argument("--agency")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_vouchers)


def _fail(message: str, code: int = 1) -> int:
    print(f"tgw: {message}", file=sys.stderr)
    return code


def init(args: argparse.Namespace) -> int:
    """Create an instance directory."""
    from gateway.store.db import create_engine_for
    from gateway.store.migrate import upgrade

    directory: Path = args.dir
    if (directory / "gateway.toml").exists():
        return _fail(f"{directory} already holds an instance (gateway.toml exists)")
    banks: list[tuple[str, str]] = []
    for spec in args.bank or ["ICBC"]:
        code, _, dialect = spec.partition(":")
        banks.append((code, dialect or "standard"))
    from banks import registry

    for code, dialect in banks:
        try:
            registry.get(dialect)
        except registry.UnknownDialect as exc:
            return _fail(f"--bank {code}:{dialect}: {exc}")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _init_pki(directory / "pki", args.node, banks, KeyType(args.key_type))
    except PkiError as exc:
        return _fail(str(exc))
    text = configuration.render(
        node=args.node,
        banks=banks,
        bank_port=args.bank_port,
        web_port=args.web_port,
        database=args.database,
        api_token=secrets.token_urlsafe(24),
    )
    (directory / "gateway.toml").write_text(text, encoding="utf-8")
    cfg = configuration.load(directory / "gateway.toml")
    upgrade(create_engine_for(cfg.database_url))
    print(
        f"created {directory}: banks {', '.join(f'{c}:{d}' for c, d in banks)}; "
        f"run it with: tgw run --config {directory / 'gateway.toml'}"
    )
    return 0


def _init_pki(path: Path, node: str, banks: list[tuple[str, str]], key_type: KeyType) -> None:
    """The development PKI: the CA, the gateway's keys, and each bank's certificate of a type its dialect takes.

    A dialect's signature scheme may accept only one key type (a detached ECDSA signature, say), so a bank gets
    `key_type` where its dialect accepts it and the other type where it does not, and the gateway gets a second
    message-signing pair of the other type (`gateway-signing-alt-*.pem`) to sign for such banks.
    """
    from banks import registry
    from certs.pki import generate_key, issue_signing_cert, save_certificates, save_private_key
    from protocols.signature import ECDSA_SHA256, RSA_SHA256

    now = datetime.now(UTC)
    pki = PkiDirectory(path)
    pki.init(node, [c for c, _ in banks], key_type, now)
    other = KeyType.EC if key_type is KeyType.RSA else KeyType.RSA
    method = {KeyType.RSA: RSA_SHA256, KeyType.EC: ECDSA_SHA256}
    for code, dialect in banks:
        if method[key_type] not in registry.get(dialect).signature_methods:
            pki.issue_bank(code, other, now)
    ca_cert, ca_key = pki.load_ca()
    key = generate_key(other)
    save_private_key(path / "gateway-signing-alt-key.pem", key)
    save_certificates(path / "gateway-signing-alt-cert.pem", issue_signing_cert(ca_cert, ca_key, key, node, now))


def _load(path: Path) -> configuration.Config | None:
    try:
        return configuration.load(path)
    except ConfigError as exc:
        print(f"tgw: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGTERM / SIGINT, then drain and stop."""
    cfg = _load(args.config)
    if cfg is None:
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from twisted.internet import reactor

    from gateway import app

    running = app.start(cfg, reactor)
    host, port = running.bank_address
    web = running.web_address
    logging.getLogger("tgw").info(
        "gateway %s listening for banks on %s:%d, web on %s", cfg.node, host, port, f"{web[0]}:{web[1]}" if web else "-"
    )
    reactor.addSystemEventTrigger("before", "shutdown", running.stop)  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    cfg.run_file.unlink(missing_ok=True)
    return 0


def api_call(
    cfg: configuration.Config, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    """Call the running gateway's HTTP API (address from run.json, token from the config)."""
    from gateway.app import read_run_file

    info = read_run_file(cfg)
    host, port = info["web"] if info and info.get("web") else (cfg.web_host, cfg.web_port)
    request = urllib.request.Request(
        f"http://{host}:{port}{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {cfg.api_token}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def submit(args: argparse.Namespace) -> int:
    """POST the file to the running gateway; prints the accepted keys."""
    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}", 2)
    kind = "application/xml" if data.lstrip().startswith(b"<") else "application/json"
    query = f"?bank={args.bank}" if args.bank else ""
    try:
        status, answer = api_call(cfg, "POST", f"/api/vouchers{query}", data, kind)
    except OSError as exc:
        return _fail(f"the gateway is not reachable ({exc}); is `tgw run --config {args.config}` running?", 2)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    if status != 201:
        if not args.json:
            print(f"refused ({status}): {answer.get('message', '')}", file=sys.stderr)
            for problem in answer.get("problems", []):
                print(f"  {problem['field']}: {problem['message']}", file=sys.stderr)
        return 1
    if not args.json:
        for item in answer["accepted"]:
            print(item["key"])
    return 0


def _read_store(cfg: configuration.Config, fn: Any, *args: Any) -> Any:
    from gateway.dbthread import in_transaction
    from gateway.store.db import create_engine_for

    engine = create_engine_for(cfg.database_url)
    try:
        return in_transaction(engine, fn, *args)
    finally:
        engine.dispose()


def show_voucher(args: argparse.Namespace) -> int:
    from gateway.payments import queries

    cfg = _load(args.config)
    if cfg is None:
        return 2
    try:
        key = VoucherKey.parse(args.key)
    except ValueError as exc:
        return _fail(str(exc), 2)
    found = _read_store(cfg, queries.get_voucher, key)
    if found is None:
        return _fail(f"no voucher {key}")
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=2, default=str))
        return 0
    print(f"{found['key']}  {found['state']}  {found['amount']} yuan  bank {found['bank']}")
    print(f"  agency  {found['agency_code']} {found['agency_name']}")
    print(f"  payee   {found['payee_acct_no']} {found['payee_acct_name']}")
    if found["x_agent_business_no"]:
        print(f"  paid    serial {found['x_agent_business_no']} on {found['x_pay_date']}")
    if found["reason"]:
        print(f"  reason  {found['reason']}")
    print("  timeline:")
    for entry in found["timeline"]:
        print(
            f"    {entry['at']}  {entry['event']:<20} {entry['from'] or '':>10} -> {entry['to']:<10} {entry['actor']}"
        )
    return 0


def list_vouchers(args: argparse.Namespace) -> int:
    from gateway.payments import queries

    cfg = _load(args.config)
    if cfg is None:
        return 2
    page = _read_store(
        cfg,
        queries.list_vouchers,
        queries.VoucherFilter(
            state=args.state, bank=args.bank, agency=args.agency, limit=args.limit, offset=args.offset
        ),
    )
    if args.json:
        print(json.dumps(page, ensure_ascii=False, indent=2, default=str))
        return 0
    for v in page["vouchers"]:
        paid = f"{v['x_agent_business_no']} {v['x_pay_date']}" if v["x_agent_business_no"] else ""
        print(f"{v['key']:<36} {v['bank']:<8} {v['state']:<10} {format_amount_fen(v['amount_fen']):>16}  {paid}")
    print(f"{len(page['vouchers'])} of {page['total']}", file=sys.stderr)
    return 0
