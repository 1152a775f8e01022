"""Assembles a running gateway: store, hub, the mutual-TLS bank listener and the web port.

TLS (PROTOCOL.md §1): TLS 1.2 or 1.3 only; a client certificate is required and must chain to the bank CA
and not be revoked in the CRL (re-read when `crl.pem` changes, so `tgw pki revoke` takes effect for new
connections without a restart); expired certificates fail the handshake. The peer is then bound to one
configured bank by :meth:`gateway.hub.Hub.bank_for_certificate`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IOpenSSLContextFactory
from twisted.web.server import Site
from zope.interface import implementer

from certs.pki import load_certificate, load_crl, load_private_key
from gateway.cards import runtime as cards
from gateway.config import Config
from gateway.dbthread import Database
from gateway.hub import Hub
from gateway.reconcile import scheduler as nightly
from gateway.reconcile.link import LinkReconciler
from gateway.session import BankSessionFactory
from gateway.store.db import create_engine_for
from gateway.store.migrate import upgrade

log = logging.getLogger(__name__)


@implementer(IOpenSSLContextFactory)
class BankTlsContext:
    """pyOpenSSL context for the bank listener: mutual TLS against the bank CA and its CRL."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._crl_mtime: float | None = None
        self._context: SSL.Context | None = None

    def _build(self) -> SSL.Context:
        cfg = self.config
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET)
        ctx.use_certificate(crypto.X509.from_cryptography(load_certificate(cfg.tls_cert)))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(load_private_key(cfg.tls_key)))  # type: ignore[arg-type]
        ctx.check_privatekey()
        ca = load_certificate(cfg.ca_cert)
        store = ctx.get_cert_store()
        assert store is not None
        store.add_cert(crypto.X509.from_cryptography(ca))
        if cfg.crl.exists():
            store.add_crl(load_crl(cfg.crl))
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
        ctx.set_client_ca_list([crypto.X509.from_cryptography(ca).get_subject()])
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_ok)
        ctx.set_session_id(b"tgw-bank")
        return ctx

    def getContext(self) -> SSL.Context:
        mtime = self.config.crl.stat().st_mtime if self.config.crl.exists() else None
        if self._context is None or mtime != self._crl_mtime:
            self._context = self._build()
            self._crl_mtime = mtime
        return self._context


def _verify_ok(conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
    if not ok:
        log.warning("TLS client certificate refused: %s (error %d at depth %d)", cert.get_subject(), errno, depth)
    return bool(ok)


@dataclass
class Running:
    """A started gateway: what to stop, and where it listens."""

    hub: Hub
    db: Database
    bank_port: IListeningPort
    web_port: IListeningPort | None
    #: The web port's resource tree (the dashboard hangs on it as `.dashboard`), or None without a web port.
    web_root: Any = None

    @property
    def bank_address(self) -> tuple[str, int]:
        addr = self.bank_port.getHost()
        return addr.host, addr.port  # type: ignore[attr-defined]

    @property
    def web_address(self) -> tuple[str, int] | None:
        if self.web_port is None:
            return None
        addr = self.web_port.getHost()
        return addr.host, addr.port  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop listening, end the dashboard's live streams, close bank sessions, let the store thread finish, stop
        it, close the store."""
        self.hub.stop()
        cards.stop_watch(self.hub)  # official cards (issue 5): the deadline watch
        nightly.stop_nightly(self.hub)  # issue 6 §7: the nightly reconciliation
        yield self.bank_port.stopListening()
        if self.web_port is not None:
            yield self.web_port.stopListening()
        dashboard = getattr(self.web_root, "dashboard", None)
        if dashboard is not None:  # end the dashboard's live streams: browsers would hold their connections open
            dashboard.live.close()
        for sessions in self.hub.sessions.values():
            for session in list(sessions):
                session.close()
        self.db.stop()
        # Give the store's connections back (a PostgreSQL pool would otherwise hold them until the process
        # exits, and an embedding process that starts the gateway again would leak one pool per start).
        self.db.engine.dispose()


def start(config: Config, reactor: Any, *, web: bool = True, migrate: bool = True) -> Running:
    """Open the store (migrating it), start the hub, listen for banks and for the web."""
    engine = create_engine_for(config.database_url)
    if migrate:
        upgrade(engine)
    db = Database(engine, reactor)
    db.start()
    hub = Hub(config, db, reactor)
    hub.link_reconciler = LinkReconciler(hub)  # issue 6: statements over the link (4005 → 4006 pages → 2507)
    bank_port = reactor.listenSSL(
        config.bank_port, BankSessionFactory(hub, reactor), BankTlsContext(config), interface=config.bank_host
    )
    web_port = web_root = None
    if web:
        from gateway.web import build_root  # the web layer is optional for embedded uses and tests

        web_root = build_root(hub)
        web_port = reactor.listenTCP(config.web_port, Site(web_root), interface=config.web_host)
    hub.start()
    cards.start_watch(hub)  # official cards (issue 5): deadlines raised in the log and as counts
    from gateway.reconcile.provider import StoreReconciliation  # issue 6: breaks for the dashboard and the API

    setattr(hub, "reconciliation", StoreReconciliation())  # noqa: B010
    nightly.start_nightly(hub)  # issue 6 §7: every bank's previous work date at [reconciliation] nightly_at
    running = Running(hub, db, bank_port, web_port, web_root)
    write_run_file(config, running)
    return running


def write_run_file(config: Config, running: Running) -> None:
    """`DIR/run.json`: pid and the ports actually bound (port 0 in the config means any free port)."""
    data = {
        "pid": os.getpid(),
        "bank": list(running.bank_address),
        "web": list(running.web_address) if running.web_address else None,
    }
    tmp = config.run_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(config.run_file)


def read_run_file(config: Config) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(Path(config.run_file).read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError):
        return None


_ = x509
