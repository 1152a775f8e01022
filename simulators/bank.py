"""A simulated agent bank on the network: a TLS client that speaks its dialect to the gateway, like a real bank.

It uses only `protocols/` and `banks/` (never `gateway/`): the same code path an independent bank
implementation would take. It signs on, acknowledges what the gateway sends, executes vouchers on its
:class:`~simulators.ledger.Ledger` as its :class:`~simulators.rules.RuleSet` decides, sends receipts, returns
(2252) and status replies (9102), resends its own unacknowledged messages with the same `MsgId` after a
reconnection, and can misbehave on purpose (a seeded :class:`~simulators.rules.FaultPlan`: drop, duplicate,
reorder, delay, disconnect). Every random choice comes from one seeded :class:`random.Random`.

Statements over the link (issue 6): on a 4005 it answers 9120 90000, then sends its ledger's statement of that
check date as 4006 pages of `statement_page_size` details, each a request of its own that the gateway
acknowledges (resent like the others); a `spoiler` (:data:`StatementSpoiler`, given by the caller: the gateway's
`tgw simulate bank --discrepancies` makes one with `reconciliation.inject`) may spoil the lines first, and
what it injected is kept in :attr:`SimulatedBank.statements` and emitted as a `statement_sent` event. On a 2507
it answers 90000 and keeps the result (:attr:`SimulatedBank.reconcile_results`, a `reconcile_result` event).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

from twisted.internet import protocol, ssl
from twisted.internet.interfaces import IReactorTime

from banks import registry
from banks.dialect import Dialect
from certs.pki import load_certificate, load_private_key
from protocols.errors import ProtocolError
from protocols.framing import FrameDecoder, encode_frame
from protocols.messages import (
    MAX_STATEMENT_DETAILS,
    Head,
    Message,
    Payload,
    Ping,
    QuotaNotice,
    Receipt,
    ReconcileResult,
    Reply,
    ReturnNotice,
    SignOn,
    SignOnReply,
    StatementDetail,
    StatementRequest,
    StatusQuery,
    Voucher,
    VoucherKey,
)
from protocols.signature import Signer, Verifier
from simulators.ledger import Ledger, paginate
from simulators.rules import DEFAULT_RETURN_REASON, Drop, FaultPlan, FaultProfile, RuleSet, Send

log = logging.getLogger(__name__)
CST = timedelta(hours=8)


@dataclass
class BankSetup:
    """Everything a simulated bank needs to connect (from an instance's files)."""

    code: str
    host: str
    port: int
    node: str
    ca_cert: Path
    cert: Path
    key: Path
    gateway_signing_cert: Path
    dialect: str = "standard"


@dataclass(frozen=True, slots=True)
class SpoiltStatement:
    """A statement as a :data:`StatementSpoiler` returns it: its lines, the `AllNum` and `AllAmt` to declare,
    and what was done to it (discrepancies per break class, `{"amount_mismatch": 2, …}`)."""

    lines: list[StatementDetail]
    declared: tuple[int, int]
    injected: dict[str, int]


#: Spoils the true lines of a check date on purpose (`lines`, `check_date` → :class:`SpoiltStatement`); raises
#: ValueError when it cannot (too few lines), and the bank then sends the true statement.
StatementSpoiler = Callable[[list[StatementDetail], date], SpoiltStatement]


@dataclass
class StatementSent:
    """A statement the bank sent for a check date: its pages and lines, its declared totals, what was injected
    (empty when the statement was true), and why nothing was injected when that was asked and impossible."""

    check_date: date
    request: str
    pages: int
    lines: int
    declared: tuple[int, int]
    injected: dict[str, int]
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "check_date": self.check_date.isoformat(),
            "request": self.request,
            "pages": self.pages,
            "lines": self.lines,
            "declared": {"count": self.declared[0], "amount_fen": self.declared[1]},
            "injected": dict(self.injected),
            "error": self.error,
        }


@dataclass
class Stats:
    """What the bank did, for the demo's summary and the tests."""

    vouchers: int = 0
    paid: int = 0
    refused: int = 0
    receipts_sent: int = 0
    returns_sent: int = 0
    status_replies: int = 0
    statements_sent: int = 0
    reconcile_results: int = 0
    acks_received: int = 0
    rejected_by_gateway: int = 0
    connections: int = 0
    temporary_retries: int = 0  # requests sent again after a 91099
    results: dict[int, int] = field(default_factory=dict)


class SimulatedBank:
    """The bank's state, shared by its successive connections."""

    def __init__(
        self,
        setup: BankSetup,
        reactor: Any,
        *,
        rules: RuleSet | None = None,
        seed: int = 0,
        ledger: Ledger | None = None,
        faults: FaultProfile | None = None,
        reconnect_delay_s: float = 1.0,
        reconnect_delay_max_s: int = 5,
        statement_page_size: int = MAX_STATEMENT_DETAILS,
        spoiler: StatementSpoiler | None = None,
        temporary_retry_s: float = 0.5,
    ) -> None:
        if not 1 <= statement_page_size <= MAX_STATEMENT_DETAILS:
            raise ValueError(f"statement_page_size must be 1-{MAX_STATEMENT_DETAILS}, not {statement_page_size}")
        self.setup = setup
        self.statement_page_size = statement_page_size
        self.spoiler = spoiler
        #: The statements sent, by check date (the last one of each date).
        self.statements: dict[date, StatementSent] = {}
        #: The gateway's reconciliation results (2507), by check date (the last one of each date).
        self.reconcile_results: dict[date, ReconcileResult] = {}
        self.reconnect_delay_s = reconnect_delay_s
        self.reconnect_delay_max_s = max(reconnect_delay_max_s, math.ceil(reconnect_delay_s))
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.rng = Random(seed)
        self.seed = seed
        self.rules = rules or RuleSet()
        self.ledger = ledger or Ledger(setup.code)
        self.dialect: Dialect = registry.get(setup.dialect)
        self.signer = Signer(load_private_key(setup.key), load_certificate(setup.cert))
        self.verifier = Verifier(load_certificate(setup.gateway_signing_cert))
        profile = faults or self.rules.faults or FaultProfile()
        self.faults: FaultPlan[bytes] = FaultPlan(profile, Random(seed ^ 0x5EED))
        self.stats = Stats()
        self.connection: BankClient | None = None
        self._seq = 0
        self._boot = os.urandom(2).hex().upper()
        #: our unacknowledged requests: MsgId -> frame (resent after reconnection, same MsgId and bytes)
        self.unacked: dict[str, bytes] = {}
        #: requests answered 91099, waiting to be sent again (MsgId -> the delayed call)
        self._retries: dict[str, Any] = {}
        self.temporary_retry_s = temporary_retry_s
        #: replies we gave, by the gateway's MsgId: a resend gets the same answer
        self.replied: dict[str, Payload] = {}
        self.vouchers: dict[str, Voucher] = {}
        self._arrivals: dict[Any, int] = {}
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._factory: BankClientFactory | None = None
        self.stopped = False

    # --- time -------------------------------------------------------------------------------------------------

    def now_cst(self) -> datetime:
        return datetime.utcfromtimestamp(self.clock.seconds()) + CST

    def today(self) -> date:
        return self.now_cst().date()

    # --- connection management ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (and reconnect, with backoff, until :meth:`stop`)."""
        self._factory = BankClientFactory(self)
        self._factory.maxDelay = self.reconnect_delay_max_s  # the backoff grows by 1.5 per failure up to this
        self._factory.initialDelay = self.reconnect_delay_s
        self._factory.delay = self.reconnect_delay_s
        self._factory.factor = 1.5
        self.reactor.connectSSL(self.setup.host, self.setup.port, self._factory, self._tls_options())

    def stop(self) -> None:
        self.stopped = True
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
        if self._factory is not None:
            self._factory.stopTrying()
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.loseConnection()

    def _tls_options(self) -> Any:
        ca = ssl.Certificate.loadPEM(self.setup.ca_cert.read_bytes())
        client = ssl.PrivateCertificate.loadPEM(self.setup.cert.read_bytes() + self.setup.key.read_bytes())
        return ssl.optionsForClientTLS("localhost", trustRoot=ca, clientCertificate=client)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(kind, data)

    # --- messages -----------------------------------------------------------------------------------------------

    def next_msg_id(self) -> str:
        self._seq += 1
        return f"{self.setup.code[:6]}{self.today():%Y%m%d}{self._boot}{self._seq:08d}"

    def frame(self, payload: Payload, msg_ref: str | None = None, msg_id: str | None = None) -> tuple[str, bytes]:
        msg_id = msg_id or self.next_msg_id()
        head = Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_ref if msg_ref is not None else msg_id,
            src=self.setup.code,
            des=self.setup.node,
            work_date=self.today(),
            send_time=self.now_cst(),
        )
        body = self.dialect.encode(Message(head, payload), self.signer)
        return msg_id, encode_frame(self.dialect.framing, body)

    def send(self, frame: bytes) -> None:
        """Send through the fault plan (perfect by default)."""
        conn = self.connection
        if conn is None or conn.transport is None:
            return
        for step in self.faults.outbound(frame):
            if isinstance(step, Drop):
                conn.transport.loseConnection()
                return
            assert isinstance(step, Send)
            if step.delay_ms:
                self.clock.callLater(step.delay_ms / 1000, self._write_now, step.item)
            else:
                self._write_now(step.item)

    def _write_now(self, frame: bytes) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.write(frame)

    def request(self, payload: Payload) -> str:
        """Send a request of ours (receipt, return…) and keep it until the gateway acknowledges it."""
        msg_id, frame = self.frame(payload)
        self.unacked[msg_id] = frame
        if self.connection is not None and self.connection.signed_on:
            self.send(frame)
        return msg_id

    def _retry_later(self, msg_id: str) -> None:
        """After a 91099 ("temporary failure, nothing recorded"), resend the request after `temporary_retry_s`,
        same MsgId and bytes, on whatever signed-on link there is then (once per 91099 answer)."""
        if msg_id in self._retries:
            return

        def again() -> None:
            self._retries.pop(msg_id, None)
            frame = self.unacked.get(msg_id)
            if frame is not None and not self.stopped and self.connection is not None and self.connection.signed_on:
                self.stats.temporary_retries += 1
                self.send(frame)

        self._retries[msg_id] = self.clock.callLater(self.temporary_retry_s, again)

    def reply(self, payload: Payload, msg_ref: str) -> None:
        self.replied[msg_ref] = payload
        _, frame = self.frame(payload, msg_ref=msg_ref)
        self.send(frame)

    def handle(self, message: Message) -> None:
        """One verified message from the gateway."""
        head, body = message.head, message.body
        if isinstance(body, SignOnReply):
            if body.result == 90000 and self.connection is not None:
                self.connection.signed_on = True
                self.emit("signed_on", {"bank": self.setup.code})
                for frame in list(self.unacked.values()):
                    self.send(frame)
            return
        if isinstance(body, Reply):
            self.stats.results[body.result] = self.stats.results.get(body.result, 0) + 1
            if head.msg_ref in self.unacked and body.result == 91099:
                self._retry_later(head.msg_ref)  # nothing was recorded: send the same bytes again shortly
            if head.msg_ref in self.unacked and body.result != 91099:
                del self.unacked[head.msg_ref]
                self.stats.acks_received += 1
                if body.result != 90000:
                    self.stats.rejected_by_gateway += 1
                    log.warning(
                        "%s: gateway refused %s: %s %s", self.setup.code, head.msg_ref, body.result, body.add_word
                    )
            return
        if head.msg_id in self.replied:  # the gateway resent something: same answer again
            self.reply(self.replied[head.msg_id], head.msg_id)
            return
        if isinstance(body, Ping):
            self.reply(Reply(ori_msg_no="9005", result=90000, add_word=""), head.msg_id)
        elif isinstance(body, Voucher):
            self._voucher(body, head.msg_id)
        elif isinstance(body, StatusQuery):
            self.stats.status_replies += 1
            self.reply(self.ledger.status_of(body.key), head.msg_id)
        elif isinstance(body, QuotaNotice):
            self.ledger.apply_quota(body)
            self.reply(Reply(ori_msg_no="5106", result=90000, add_word=""), head.msg_id)
        elif isinstance(body, StatementRequest):
            self.reply(Reply(ori_msg_no="4005", result=90000, add_word=""), head.msg_id)
            self.send_statement(body.check_date, head.msg_id)
        elif isinstance(body, ReconcileResult):
            self.reply(Reply(ori_msg_no="2507", result=90000, add_word=""), head.msg_id)
            self.reconcile_results[body.check_date] = body
            self.stats.reconcile_results += 1
            self.emit(
                "reconcile_result",
                {
                    "bank": self.setup.code,
                    "check_date": body.check_date.isoformat(),
                    "x_check_result": body.x_check_result,
                    "x_diff_num": body.x_diff_num,
                    "details": len(body.details),
                },
            )
        else:
            self.reply(Reply(ori_msg_no=head.msg_no, result=91006, add_word="not handled by this bank"), head.msg_id)

    def send_statement(self, check_date: date, request: str = "") -> StatementSent:
        """Send the ledger's statement of `check_date` as 4006 pages (spoilt first if the bank has a spoiler),
        each a request of its own; returns what was sent (also kept in :attr:`statements`)."""
        lines = self.ledger.statement_lines(check_date)
        declared = (len(lines), sum(line.amt_fen for line in lines))
        injected: dict[str, int] = {}
        error = ""
        if self.spoiler is not None:
            try:
                spoilt = self.spoiler(lines, check_date)
            except ValueError as exc:  # too few lines for the discrepancies asked: the true statement goes
                error = str(exc)
                log.warning("%s: statement of %s sent unspoilt: %s", self.setup.code, check_date, exc)
            else:
                lines, declared, injected = spoilt.lines, spoilt.declared, dict(spoilt.injected)
        pages = paginate(check_date, lines, self.statement_page_size, declared)
        for page in pages:
            self.request(page)
        sent = StatementSent(check_date, request, len(pages), len(lines), declared, injected, error)
        self.statements[check_date] = sent
        self.stats.statements_sent += 1
        self.emit("statement_sent", {"bank": self.setup.code, **sent.as_json()})
        return sent

    def _voucher(self, voucher: Voucher, msg_id: str) -> None:
        self._arrivals[voucher.key] = attempt = self._arrivals.get(voucher.key, 0) + 1
        decision = self.rules.decide(voucher, self.rng, attempt=attempt)
        self.stats.vouchers += 1
        if decision.record:
            self.ledger.receive(voucher)
            self.vouchers[str(voucher.key)] = voucher
        if decision.ack:
            self.reply(Reply(ori_msg_no=voucher.msg_no, result=90000, add_word=""), msg_id)
        if decision.disconnect and self.connection is not None and self.connection.transport is not None:
            self.connection.transport.loseConnection()
        if not decision.execute:
            return

        def execute() -> None:
            outcome = self.ledger.pay(
                voucher,
                self.today(),
                refuse_reason=decision.refuse_reason,
                failed_details=dict(decision.failed_details) or None,
            )
            if outcome.paid:
                self.stats.paid += 1
            else:
                self.stats.refused += 1
            receipt: Receipt = self.ledger.make_receipt(voucher, outcome)
            for _ in range(decision.receipt_copies):
                self.request(receipt)
                self.stats.receipts_sent += 1
            self.emit("paid" if outcome.paid else "refused", {"bank": self.setup.code, "key": str(voucher.key)})
            plan = decision.return_plan
            if plan is not None and outcome.paid:
                self.clock.callLater(
                    plan.after_s, self._return, voucher, plan.amount_for(outcome.paid_fen), plan.reason
                )

        if decision.receipt_delay_s > 0:
            self.clock.callLater(decision.receipt_delay_s, execute)
        else:
            execute()

    def return_payment(self, key: VoucherKey, amount_fen: int, reason: str = DEFAULT_RETURN_REASON) -> str:
        """The payee bank sent part or all of a paid voucher back: book it and send the 2252; returns its MsgId.

        Raises:
            ReturnRefused: the voucher was not paid here, or more than is left to return is asked.
        """
        notice: ReturnNotice = self.ledger.return_payment(key, amount_fen, self.today(), reason)
        self.stats.returns_sent += 1
        return self.request(notice)

    def _return(self, voucher: Voucher, amount_fen: int, reason: str) -> None:
        if amount_fen <= 0:
            return
        notice: ReturnNotice = self.ledger.return_payment(voucher.key, amount_fen, self.today(), reason)
        self.request(notice)
        self.stats.returns_sent += 1


class BankClient(protocol.Protocol):
    """One TLS connection of the simulated bank."""

    def __init__(self, bank: SimulatedBank) -> None:
        self.bank = bank
        self.decoder = FrameDecoder(bank.dialect.framing)
        self.signed_on = False

    def connectionMade(self) -> None:
        self.bank.connection = self
        self.bank.stats.connections += 1
        _, frame = self.bank.frame(
            SignOn(bank_code=self.bank.setup.code, last_work_date=self.bank.today() - timedelta(days=1))
        )
        assert self.transport is not None
        self.transport.write(frame)  # sign-on is never subject to the fault plan

    def dataReceived(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            log.error("%s: framing error from the gateway: %s", self.bank.setup.code, exc)
            assert self.transport is not None
            self.transport.loseConnection()
            return
        for frame in frames:
            try:
                inbound = self.bank.dialect.decode(frame, self.bank.verifier)
            except ProtocolError as exc:
                log.error("%s: refused a message from the gateway: %s", self.bank.setup.code, exc)
                head = self.bank.dialect.peek_head(frame)
                self.bank.reply(
                    Reply(ori_msg_no=head.msg_no, result=int(exc.result_code), add_word=str(exc)[:200]), head.msg_id
                )
                continue
            self.bank.handle(inbound.message)

    def connectionLost(self, reason: Any = None) -> None:
        if self.bank.connection is self:
            self.bank.connection = None
        self.signed_on = False


class BankClientFactory(protocol.ReconnectingClientFactory):
    """Reconnects with backoff until the bank is stopped."""

    def __init__(self, bank: SimulatedBank) -> None:
        self.bank = bank

    def buildProtocol(self, addr: Any) -> BankClient:
        self.resetDelay()
        return BankClient(self.bank)
