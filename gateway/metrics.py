"""Prometheus metrics of the gateway at `/metrics` (text exposition format 0.0.4, through prometheus-client).

Why prometheus-client: it is small and pure Python, writes the exposition format exactly (escaping, `HELP`,
`TYPE`, histogram buckets, `_sum`/`_count`), and lets us keep one registry per hub instead of the library's global
one, so that several gateways in one test process do not share metrics.

Where each number comes from:

| metric | type | source |
|---|---|---|
| `tgw_messages_total{bank,direction,msg_no}` | counter | the archive: every message in and out |
| `tgw_replies_total{bank,result}` | counter | the archive: the `Result` we answered each inbound message with |
| `tgw_bank_results{bank,msg_no,result}` | gauge | the outbox: the banks' `Result` on our messages (rows by result) |
| `tgw_ack_latency_seconds{bank}` | histogram | live events: sent → the bank's 9120 (this node's sends) |
| `tgw_receipt_latency_seconds{bank}` | histogram | live events: sent → the receipt or status that settles it |
| `tgw_outbox_depth{bank,state}` | gauge | outbox rows PENDING (queued) and SENT (on the wire, not acknowledged) |
| `tgw_vouchers{bank,state}` / `tgw_in_doubt_vouchers{bank}` | gauge | the vouchers table |
| `tgw_bank_sessions{bank,signed_on}` | gauge | this node's live TLS sessions |
| `tgw_certificate_days_left{cert,bank,serial}` | gauge | certificate files: banks. pinned ones, ours |
| `tgw_recon_open_breaks{bank,class}` | gauge | reconciliation breaks still open, by class |
| `tgw_recon_last_check_date_seconds{bank}` | gauge | the latest check date reconciled (its midnight UTC; 0: never) |

Counters read from the archive describe the cluster's database, not one node: with several nodes, aggregate them
with `max`, not `sum`. They are counted incrementally by archive id (the archive is append-only): each scrape
counts only rows newer than the last one counted, and only rows at least :data:`SETTLE_S` old, so that a row
whose transaction committed late (PostgreSQL allocates ids before commit) is still counted once. A process
counts the whole archive once, on its first scrape. The outbox and voucher gauges are `GROUP BY` queries, cached
for :data:`CACHE_S`. Latencies exist only in memory, for the sends this node observed.

Access (DESIGN.md: "/metrics protected"): a signed-in dashboard session, or `Authorization: Bearer <token>` with
a token created by `tgw users metrics-token` (only its SHA-256 is stored, in the `meta` table). The finance API
token is deliberately not accepted: a scraper must not be able to submit payments.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from certs.pki import load_certificate
from gateway.store import repo
from gateway.store.tables import archive, outbox, recon_breaks, recon_runs, vouchers

if TYPE_CHECKING:
    from gateway.hub import Hub

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: How old an archive row must be before it is counted (see the module docstring).
SETTLE_S: Final = 30
#: How long one snapshot of the database gauges is reused.
CACHE_S: Final = 10.0
#: Sends whose answer we wait for, remembered for the latency histograms (oldest forgotten first).
PENDING_SENDS_MAX: Final = 100_000
#: Histogram buckets, in seconds: from a fast local acknowledgement to a receipt after the 300 s deadline.
LATENCY_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_TOKEN_META_KEY: Final = "metrics_token_sha256"


# --- the scrape token -----------------------------------------------------------------------------------------


def new_token() -> tuple[str, str]:
    """A new random bearer token and the digest to store."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def store_token_digest(conn: Connection, digest: str) -> None:
    """Replace the scrape token (the previous one stops working)."""
    repo.set_meta(conn, _TOKEN_META_KEY, digest)


def check_token(conn: Connection, token: str) -> bool:
    """Whether `token` is the current scrape token."""
    stored = repo.get_meta(conn, _TOKEN_META_KEY)
    if not stored or not token:
        return False
    return hmac.compare_digest(stored, hashlib.sha256(token.encode()).hexdigest())


# --- database side (runs on the store thread) -----------------------------------------------------------------


@dataclass
class ArchiveCounts:
    """Counts of archived messages, advanced incrementally by id."""

    upto_id: int = 0
    messages: dict[tuple[str, str, str], int] = field(default_factory=dict)
    replies: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """One reading of the database gauges."""

    outbox_depth: dict[tuple[str, str], int]
    vouchers: dict[tuple[str, str], int]
    bank_results: dict[tuple[str, str, str], int]
    open_breaks: dict[tuple[str, str], int] = field(default_factory=dict)  # (bank, break class) → open breaks
    last_check_date: dict[str, date] = field(default_factory=dict)  # bank → latest reconciled check date


def count_archive(conn: Connection, counts: ArchiveCounts, now: datetime) -> ArchiveCounts:
    """Add the archive rows newer than `counts.upto_id` (and older than :data:`SETTLE_S`) to a copy of `counts`."""
    a = archive.c
    settled_before = now - timedelta(seconds=SETTLE_S)
    first_unsettled = conn.execute(
        select(func.min(a.id)).where(a.id > counts.upto_id, a.at >= settled_before)
    ).scalar_one_or_none()
    where = [a.id > counts.upto_id]
    if first_unsettled is not None:
        where.append(a.id < first_unsettled)
    out = ArchiveCounts(counts.upto_id, dict(counts.messages), dict(counts.replies))
    rows = conn.execute(
        select(a.bank_code, a.direction, a.msg_no, a.result_code, func.count(), func.max(a.id))
        .where(*where)
        .group_by(a.bank_code, a.direction, a.msg_no, a.result_code)
    ).all()
    for bank, direction, msg_no, result, n, top in rows:
        key = (bank, direction, msg_no or "unknown")
        out.messages[key] = out.messages.get(key, 0) + n
        if direction == "in" and result is not None:
            rkey = (bank, str(result))
            out.replies[rkey] = out.replies.get(rkey, 0) + n
        out.upto_id = max(out.upto_id, top)
    return out


def snapshot(conn: Connection) -> Snapshot:
    """The outbox depth, vouchers by bank and state, and the banks' results on our messages."""
    o, v = outbox.c, vouchers.c
    depth = {
        (bank, state): n
        for bank, state, n in conn.execute(
            select(o.bank_code, o.state, func.count())
            .where(o.state.in_(("PENDING", "SENT")))
            .group_by(o.bank_code, o.state)
        )
    }
    by_state = {
        (bank, state): n
        for bank, state, n in conn.execute(select(v.bank_code, v.state, func.count()).group_by(v.bank_code, v.state))
    }
    results = {
        (bank, msg_no, str(result)): n
        for bank, msg_no, result, n in conn.execute(
            select(o.bank_code, o.msg_no, o.result_code, func.count())
            .where(o.result_code.is_not(None))
            .group_by(o.bank_code, o.msg_no, o.result_code)
        )
    }
    b, r = recon_breaks.c, recon_runs.c
    open_breaks = {
        (bank, cls): n
        for bank, cls, n in conn.execute(
            select(b.bank_code, b.break_class, func.count())
            .where(b.state == "OPEN")
            .group_by(b.bank_code, b.break_class)
        )
    }
    last = {
        bank: day
        for bank, day in conn.execute(
            select(r.bank_code, func.max(r.check_date)).where(r.status == "DONE").group_by(r.bank_code)
        )
    }
    return Snapshot(depth, by_state, results, open_breaks, last)


# --- certificates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    """What the dashboard and the metrics show of one certificate file."""

    name: str  # "bank", "gateway-tls", "gateway-signing"
    bank: str
    path: Path
    subject: str
    serial: int
    not_before: datetime
    not_after: datetime

    def days_left(self, now: datetime) -> float:
        """Days until it expires (negative once expired); `now` naive UTC."""
        return (self.not_after - now).total_seconds() / 86400


_cert_cache: dict[Path, tuple[float, CertInfo | None]] = {}


def read_cert(name: str, bank: str, path: Path) -> CertInfo | None:
    """The certificate at `path` (re-read when the file changes), or None if it is missing or unreadable."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    cached = _cert_cache.get(path)
    if cached is not None and cached[0] == mtime and cached[1] is not None and cached[1].name == name:
        return cached[1]
    try:
        cert = load_certificate(path)
    except Exception:  # a half-written or foreign file: shown as missing, not a crashed page
        info = None
    else:
        info = CertInfo(
            name,
            bank,
            path,
            cert.subject.rfc4514_string(),
            cert.serial_number,
            cert.not_valid_before_utc.replace(tzinfo=None),
            cert.not_valid_after_utc.replace(tzinfo=None),
        )
    _cert_cache[path] = (mtime, info)
    return info


def certificates(hub: Hub) -> list[CertInfo]:
    """The certificates the running gateway depends on: each bank's pinned one, its own TLS and signing ones."""
    cfg = hub.config
    found = [read_cert("bank", code, b.signing_cert) for code, b in cfg.banks.items()]
    found.append(read_cert("gateway-tls", "", cfg.tls_cert))
    found.append(read_cert("gateway-signing", "", cfg.signing_cert))
    return [c for c in found if c is not None]


# --- the collector --------------------------------------------------------------------------------------------


class GatewayMetrics:
    """One hub's metrics: latency histograms fed by its events, database readings, the exposition."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=False)
        self.ack_latency = Histogram(
            "tgw_ack_latency_seconds",
            "Time from sending a voucher to the bank's 9120 acknowledgement (this node's sends).",
            ["bank"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.receipt_latency = Histogram(
            "tgw_receipt_latency_seconds",
            "Time from sending a voucher to the receipt or status that settles it (this node's sends).",
            ["bank"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.archive_counts = ArchiveCounts()
        self.db: Snapshot | None = None
        self._db_at: float | None = None
        self._sent: OrderedDict[str, tuple[float, bool]] = OrderedDict()  # key → (sent at, acknowledged)
        self.registry.register(_Readings(self))
        hub.listeners.append(self.on_event)

    def close(self) -> None:
        """Stop listening to the hub."""
        if self.on_event in self.hub.listeners:
            self.hub.listeners.remove(self.on_event)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """A hub event: time the voucher's answers."""
        if kind != "voucher" or "key" not in data:
            return
        key, state, bank = str(data["key"]), data.get("state"), str(data.get("bank", ""))
        now = self.hub.clock.seconds()
        if state == "SENT":
            if key not in self._sent:
                self._sent[key] = (now, False)
                while len(self._sent) > PENDING_SENDS_MAX:
                    self._sent.popitem(last=False)
            return
        sent = self._sent.get(key)
        if sent is None:
            return
        if state == "DELIVERED" and not sent[1]:
            self.ack_latency.labels(bank).observe(max(0.0, now - sent[0]))
            self._sent[key] = (sent[0], True)
        elif state in ("PAID", "FAILED", "REJECTED"):
            if state == "REJECTED" and not sent[1]:
                self.ack_latency.labels(bank).observe(max(0.0, now - sent[0]))
            else:
                self.receipt_latency.labels(bank).observe(max(0.0, now - sent[0]))
            del self._sent[key]

    def refresh(self) -> Any:
        """Read the database (on the store thread) if the last reading is older than :data:`CACHE_S`."""
        from twisted.internet import defer

        now_s = self.hub.clock.seconds()
        if self._db_at is not None and now_s - self._db_at < CACHE_S:
            return defer.succeed(None)
        now = datetime.fromtimestamp(now_s, UTC).replace(tzinfo=None)

        def read(conn: Connection, counts: ArchiveCounts) -> tuple[ArchiveCounts, Snapshot]:
            return count_archive(conn, counts, now), snapshot(conn)

        d = self.hub.run_in_store(read, self.archive_counts)

        def store(result: tuple[ArchiveCounts, Snapshot]) -> None:
            counts, snap = result
            if counts.upto_id >= self.archive_counts.upto_id:  # two scrapes at once: keep the newer count
                self.archive_counts = counts
            self.db = snap
            self._db_at = now_s

        return d.addCallback(store)

    def exposition(self) -> bytes:
        """The text exposition of everything (call :meth:`refresh` first for fresh database numbers)."""
        return bytes(generate_latest(self.registry))


class _Readings(Collector):
    """Metric families built at scrape time from the latest readings."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m, hub = self.m, self.m.hub
        messages = CounterMetricFamily(
            "tgw_messages", "Messages exchanged with the banks (archive).", labels=["bank", "direction", "msg_no"]
        )
        for (bank, direction, msg_no), n in sorted(m.archive_counts.messages.items()):
            messages.add_metric([bank, direction, msg_no], n)
        yield messages
        replies = CounterMetricFamily(
            "tgw_replies", "Result codes we answered the banks' messages with (archive).", labels=["bank", "result"]
        )
        for (bank, result), n in sorted(m.archive_counts.replies.items()):
            replies.add_metric([bank, result], n)
        yield replies
        snap = m.db
        depth = GaugeMetricFamily(
            "tgw_outbox_depth", "Outbound messages queued (PENDING) or unacknowledged (SENT).", labels=["bank", "state"]
        )
        in_doubt = GaugeMetricFamily("tgw_in_doubt_vouchers", "Vouchers in doubt, by bank.", labels=["bank"])
        by_state = GaugeMetricFamily("tgw_vouchers", "Vouchers by bank and state.", labels=["bank", "state"])
        results = GaugeMetricFamily(
            "tgw_bank_results",
            "Outbound messages by the bank's answer (9120 Result).",
            labels=["bank", "msg_no", "result"],
        )
        for bank in hub.config.banks:
            for state in ("PENDING", "SENT"):
                depth.add_metric([bank, state], snap.outbox_depth.get((bank, state), 0) if snap else 0)
            in_doubt.add_metric([bank], snap.vouchers.get((bank, "IN_DOUBT"), 0) if snap else 0)
        if snap is not None:
            for (bank, state), n in sorted(snap.vouchers.items()):
                by_state.add_metric([bank, state], n)
            for (bank, msg_no, result), n in sorted(snap.bank_results.items()):
                results.add_metric([bank, msg_no, result], n)
        yield from (depth, in_doubt, by_state, results)
        yield from _recon_metrics(hub.config.banks, snap)
        sessions = GaugeMetricFamily(
            "tgw_bank_sessions", "Open TLS sessions of each bank on this node.", labels=["bank", "signed_on"]
        )
        for bank, open_sessions in hub.sessions.items():
            live = len(hub.live_sessions(bank))
            sessions.add_metric([bank, "true"], live)
            sessions.add_metric([bank, "false"], len(open_sessions) - live)
        yield sessions
        days = GaugeMetricFamily(
            "tgw_certificate_days_left",
            "Days until a certificate the gateway depends on expires.",
            labels=["cert", "bank", "serial"],
        )
        now = hub.now()
        for info in certificates(hub):
            days.add_metric([info.name, info.bank, format(info.serial, "x")], round(info.days_left(now), 3))
        yield days
        yield from _card_metrics(hub)


def _recon_metrics(banks: Iterable[str], snap: Snapshot | None) -> Iterator[Metric]:
    """Open reconciliation breaks by bank and class, and each bank's latest reconciled check date."""
    breaks = GaugeMetricFamily(
        "tgw_recon_open_breaks", "Open reconciliation breaks, by bank and class.", labels=["bank", "class"]
    )
    last = GaugeMetricFamily(
        "tgw_recon_last_check_date_seconds",
        "The latest check date reconciled for each bank, as the Unix time of its midnight UTC (0: never).",
        labels=["bank"],
    )
    for bank in banks:
        day = snap.last_check_date.get(bank) if snap else None
        last.add_metric([bank], 0 if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    if snap is not None:
        for (bank, cls), n in sorted(snap.open_breaks.items()):
            breaks.add_metric([bank, cls], n)
    yield from (breaks, last)


def _card_metrics(hub: Hub) -> Iterator[Metric]:
    """Official-card spending by state, and the due / overdue records the deadline watch last counted."""
    from gateway.cards.runtime import watch_of

    watch = watch_of(hub)
    counts = watch.counts if watch is not None else {}
    records = GaugeMetricFamily("tgw_card_spending", "Official-card spending records by state.", labels=["state"])
    amounts = GaugeMetricFamily("tgw_card_spending_fen", "Official-card spending by state, in fen.", labels=["state"])
    deadlines = GaugeMetricFamily(
        "tgw_card_deadlines", "Unrepaid official-card spending near or past its LimitDate.", labels=["when"]
    )
    deadline_fen = GaugeMetricFamily(
        "tgw_card_deadlines_fen", "Unrepaid official-card spending near or past its LimitDate, in fen.", labels=["when"]
    )
    for key, value in sorted(counts.items()):
        if key.startswith("records_"):
            records.add_metric([key.removeprefix("records_")], value)
        elif key.startswith("fen_"):
            amounts.add_metric([key.removeprefix("fen_")], value)
    for when in ("due", "overdue"):
        deadlines.add_metric([when], counts.get(when, 0))
        deadline_fen.add_metric([when], counts.get(f"{when}_fen", 0))
    failures = GaugeMetricFamily("tgw_card_repay_failures", "Failed official-card repayment details, all time.")
    failures.add_metric([], counts.get("repay_failures", 0))
    yield from (records, amounts, deadlines, deadline_fen, failures)
