"""The gateway's hub: what happens to each frame a bank sends, and how outbound messages reach the banks.

Sessions (:mod:`gateway.session`) hand frames here; the hub decodes them with the bank's dialect and pinned
certificate, enforces identity and sign-on (PROTOCOL.md §1, §4), runs the business step in one database
transaction on the store thread (:mod:`gateway.payments.service`), and only after the commit writes the
reply (DESIGN.md: acknowledge after durable). Outbound, the dispatcher claims due outbox rows, signs them,
records them as sent, and writes them to a live, signed-on session of the bank, within the session's
in-flight window; unacknowledged messages are resent with the same `MsgId` and bytes, with backoff.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.exc import IntegrityError
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from banks import registry
from banks.dialect import Dialect, Inbound, RawHead
from certs.pki import bank_code_of, load_certificate, load_private_key
from gateway import pinning
from gateway.auth import accounts
from gateway.config import Config
from gateway.dbthread import Database
from gateway.payments import service
from gateway.session import BankSession
from gateway.store.db import StoreUnavailable
from gateway.store.errors import ConcurrentUpdate, TransientConflict
from protocols.errors import FramingError, LocalError, ProtocolError, ResultCode
from protocols.framing import FrameSpec, encode_frame
from protocols.messages import (
    Head,
    Message,
    Payload,
    Ping,
    Reply,
    SignOff,
    SignOffReply,
    SignOn,
    SignOnReply,
    StatusReply,
)
from protocols.signature import ECDSA_SHA256, RSA_SHA256, Signer, Verifier

if TYPE_CHECKING:
    from gateway.reconcile.link import LinkReconciler

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Messages a bank may send before it has signed on (PROTOCOL.md §4).
BEFORE_SIGN_ON = frozenset({"9005", "9006"})
UTC = UTC


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the gateway wrote: its MsgId, MsgNo and the signed document (what the archive keeps)."""

    msg_id: str
    msg_no: str
    document: bytes


class Hub:
    """Wires sessions, dialects, keys, the store thread and the payment service together."""

    def __init__(self, config: Config, db: Database, clock: IReactorTime, *, node_id: str | None = None) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.node_id = node_id or f"{os.uname().nodename}:{os.getpid()}"
        self.tz = ZoneInfo(config.timezone)
        self.signers = {code: signer_for(config, code) for code in config.banks}
        self.dialects: dict[str, Dialect] = {code: registry.get(b.dialect) for code, b in config.banks.items()}
        #: Each bank's pinned certificates (gateway/pinning.py), reloaded by :meth:`reload_pinned`.
        self.verifiers: dict[str, Verifier] = {
            code: pinning.pinned_for(code, b.signing_cert, config.crl) for code, b in config.banks.items()
        }
        self.sessions: dict[str, list[BankSession]] = {code: [] for code in config.banks}
        self._reply_seq = 0
        self._boot = os.urandom(3).hex().upper()
        self._dispatching: set[str] = set()
        self._again: set[str] = set()
        # Banks whose last claim found less than its window could take: nothing else was due then, and anything
        # enqueued since comes with its own kick (submit, operator, tick). An answer that only frees room in
        # the window (`kick(refill=True)`) has nothing to claim for them, and skips the store.
        self._drained: set[str] = set()
        # Replies written and not yet archived: archived a batch per transaction (one at a time, see _archive_out).
        self._to_archive: list[service.OutboundFrame] = []
        self._archiving = False
        self._ticker = LoopingCall(self.tick)
        self._ticker.clock = clock
        #: Observers of state changes (the dashboard's live feed, the demo's progress).
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        #: Statements over the link (gateway/reconcile/link.py): attached by gateway.app, made on first use.
        self.link_reconciler: LinkReconciler | None = None

    # --- time -------------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Current UTC time from the injected clock (naive, as stored)."""
        return datetime.fromtimestamp(self.clock.seconds(), UTC).replace(tzinfo=None)

    def work_date(self) -> date:
        """The gateway's business date: today in the instance's time zone (Asia/Shanghai)."""
        return datetime.fromtimestamp(self.clock.seconds(), self.tz).date()

    def local_time(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), self.tz).replace(tzinfo=None)

    def start(self) -> None:
        self._ticker.start(self.config.payments.tick_s, now=True).addErrback(
            lambda f: log.error("ticker stopped: %s", f.getTraceback())
        )

    def stop(self) -> None:
        if self._ticker.running:
            self._ticker.stop()
        if self._to_archive:  # queued on the store before it stops (it finishes the work it was given)
            self._flush_archive()

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(kind, data)

    def _outcome(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Emit a committed transaction's outcome events; those of a statement over the link (complete, or its
        request refused) go on to the reconciler (gateway/reconcile/link.py)."""
        for kind, data in events:
            self.emit(kind, data)
            if kind in ("statement_complete", "statement_refused"):
                from gateway.reconcile.link import reconciler_of

                reconciler_of(self).outcome(kind, data)

    # --- identity ---------------------------------------------------------------------------------------------

    def bank_for_certificate(self, peer: Any) -> str | None:
        """The configured bank a verified TLS peer certificate belongs to, or None."""
        if peer is None:
            return None
        cert: x509.Certificate = peer.to_cryptography() if hasattr(peer, "to_cryptography") else peer
        try:
            code = bank_code_of(cert)
        except Exception:  # a certificate whose bank identity is inconsistent is no bank's
            return None
        return code if code in self.config.banks else None

    def framing_for(self, bank: str) -> FrameSpec:
        return self.dialects[bank].framing

    def record_unknown_peer(self, connection_id: str, peer: Any) -> None:
        subject = str(peer.get_subject()) if peer is not None and hasattr(peer, "get_subject") else "none"
        log.warning("%s: refused TLS peer %s", connection_id, subject)

    # --- sessions ---------------------------------------------------------------------------------------------

    def session_opened(self, session: BankSession) -> None:
        assert session.bank_code is not None
        self.sessions[session.bank_code].append(session)
        self.emit("link", {"bank": session.bank_code, "sessions": len(self.sessions[session.bank_code])})

    def session_closed(self, session: BankSession) -> None:
        assert session.bank_code is not None
        live = self.sessions[session.bank_code]
        if session in live:
            live.remove(session)
        self.emit("link", {"bank": session.bank_code, "sessions": len(live)})

    def live_sessions(self, bank: str) -> list[BankSession]:
        return [s for s in self.sessions.get(bank, []) if s.signed_on and not s.closing]

    def close_sessions(self, bank: str, serial: int | None = None, *, reason: str, actor: str = "gateway") -> list[str]:
        """Cut `bank`'s open sessions at once: all of them, or those whose TLS peer presented the certificate
        `serial` (a revoked certificate: the CRL stops new handshakes, this stops the links already up).

        The transports are aborted, not signed off: a 9008 would wait for a 9009 signed with the very key that
        is no longer trusted, and nothing more may be read from or written to that peer. Nothing is lost:
        what the gateway wrote and the bank did not answer goes again, same MsgId and bytes, on the bank's next
        link; what the bank sent and the gateway has not answered, the bank sends again. Logged and audited
        (`link.close`, with the connections cut). Returns the connection ids cut.
        """
        cut = []
        for session in list(self.sessions.get(bank, [])):
            if session.closing or (serial is not None and peer_serial(session) != serial):
                continue
            session.abort()
            cut.append(session.connection_id)
        detail = {"reason": reason, "serial": None if serial is None else format(serial, "x"), "connections": cut}
        log.warning("%s: %d session(s) closed by %s: %s", bank, len(cut), actor, reason)
        d = self.db.run(accounts.audit, self.now(), actor, "link.close", "ok", bank, detail)
        d.addErrback(lambda f: log.error("could not audit closing %s's sessions: %s", bank, f.value))
        return cut

    def reload_pinned(self, bank: str) -> Verifier:
        """Read `bank`'s pinned certificates again (gateway/pinning.py: the configured one, the kept previous
        ones, less the revoked): after the dashboard issued or revoked one, without a restart. A message being
        verified meanwhile uses the set it started with.

        Raises:
            certs.pki.PkiError: a certificate file or the CRL cannot be read (the set in use stays).
        """
        verifier = pinning.pinned_for(bank, self.config.banks[bank].signing_cert, self.config.crl)
        self.verifiers[bank] = verifier
        log.info("%s: pinned certificates %s", bank, ", ".join(format(s, "x") for s in sorted(verifier.serials)))
        return verifier

    # --- writing ----------------------------------------------------------------------------------------------

    def next_reply_id(self) -> str:
        """A MsgId for a gateway reply: R + work date + boot nonce + sequence (unique per process run)."""
        self._reply_seq += 1
        return f"R{self.work_date():%Y%m%d}{self._boot}{self._reply_seq:010d}"

    def sign(self, bank: str, payload: Payload, msg_id: str, msg_ref: str) -> bytes:
        """Encode and sign a message to `bank`: the signed document, as archived (PROTOCOL.md §6)."""
        head = Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_ref,
            src=self.config.node,
            des=bank,
            work_date=self.work_date(),
            send_time=self.local_time(),
        )
        return self.dialects[bank].encode(Message(head, payload), self.signers[bank])

    def build(self, bank: str, payload: Payload, msg_id: str, msg_ref: str) -> bytes:
        """Encode, sign and frame a message to `bank`."""
        return encode_frame(self.dialects[bank].framing, self.sign(bank, payload, msg_id, msg_ref))

    def send_reply(self, session: BankSession, payload: Payload, msg_ref: str) -> Sent:
        """Write a reply on the session it answers; returns what was sent, for the archive.

        The archive keeps the signed document byte for byte (PROTOCOL.md §6), not the frame around it.
        """
        assert session.bank_code is not None
        msg_id = self.next_reply_id()
        document = self.sign(session.bank_code, payload, msg_id, msg_ref)
        session.write_frame(encode_frame(self.dialects[session.bank_code].framing, document))
        return Sent(msg_id, payload.msg_no, document)

    def _reject(
        self, session: BankSession, raw: bytes, head: RawHead, error: ProtocolError, close: bool = False
    ) -> defer.Deferred[None]:
        """Answer an undecodable or refused document with a 9120, archive both, and close if required."""
        reply = Reply(ori_msg_no=head.msg_no, result=int(error.result_code), add_word=_add_word(error))
        sent = self.send_reply(session, reply, head.msg_id)
        if close:
            session.close()
        log.info(
            "%s %s: refused %s %s: %s",
            session.connection_id,
            session.bank_code,
            head.msg_no or "?",
            head.msg_id or "?",
            error,
        )
        return self._archive_rejection(session, raw, head, error, sent)

    def _archive_rejection(
        self, session: BankSession, raw: bytes, head: RawHead, error: ProtocolError, sent: Sent
    ) -> defer.Deferred[None]:
        # PROTOCOL.md §6: archived "with the result of its verification". A dialect parses, then verifies, then
        # validates (banks/dialect.py Dialect.decode): an unreadable document (91001) was never verified, a
        # signature error (91003) failed, and anything refused later (91002 and the hub's 91004/91006) carried
        # a good signature.
        verified = {ResultCode.MALFORMED: None, ResultCode.BAD_SIGNATURE: False}.get(error.result_code, True)
        d = self.db.run(
            service.archive_rejection,
            session.bank_code,
            session.connection_id,
            raw,
            head.msg_id,
            head.msg_no,
            verified,
            str(error),
            int(error.result_code),
            sent.document,
            self.now(),
            sent.msg_id,
            sent.msg_no,
        )
        d.addErrback(lambda f: log.error("could not archive a rejection: %s", f.value))
        return d.addCallback(lambda _: None)

    # --- bytes in ---------------------------------------------------------------------------------------------

    def framing_error(self, session: BankSession, error: FramingError) -> defer.Deferred[None]:
        """PROTOCOL.md §2: reply 91001 if we can, then close."""
        return self._reject(session, b"", RawHead(), error, close=True)

    def send_probe(self, session: BankSession) -> None:
        """The idle probe (PROTOCOL.md §2): a request, so its MsgRef is its own MsgId (§3); archived like all."""
        assert session.bank_code is not None
        probe, msg_id = Ping(), self.next_reply_id()
        document = self.sign(session.bank_code, probe, msg_id, msg_id)
        session.probe_msg_id = msg_id  # its answer is archived and settles nothing (no outbox row)
        session.write_frame(encode_frame(self.dialects[session.bank_code].framing, document))
        self._archive_out(session, Sent(msg_id, probe.msg_no, document))

    def handle_frame(self, session: BankSession, raw: bytes) -> defer.Deferred[None]:
        """Decode, check and process one frame from a bank; replies only after the store has committed."""
        bank = session.bank_code
        assert bank is not None
        dialect = self.dialects[bank]
        try:
            inbound = dialect.decode(raw, self.verifiers[bank])
        except ProtocolError as exc:
            return self._reject(session, raw, dialect.peek_head(raw), exc)
        head = inbound.message.head
        raw_head = RawHead(head.msg_id, head.msg_no, head.src)
        if head.src != bank or head.des != self.config.node:
            error = _Identity(f"header Src {head.src!r} / Des {head.des!r} is not {bank} → {self.config.node}")
            return self._reject(session, raw, raw_head, error, close=True)
        body = inbound.message.body
        if not session.signed_on and head.msg_no not in BEFORE_SIGN_ON:
            return self._reject(session, raw, raw_head, _Refused("sign on (9006) first"))
        if isinstance(body, Ping):
            return self._answer_session(session, inbound, Reply(ori_msg_no="9005", result=90000, add_word=""))
        if isinstance(body, SignOn):
            if body.bank_code != bank:
                return self._reject(
                    session, raw, raw_head, _Identity(f"BankCode {body.bank_code!r} is not {bank}"), close=True
                )
            reply = SignOnReply(result=90000, add_word="签到成功", work_date=self.work_date())
            # Signed on once the sign-on is recorded; a store outage answers 91099 and leaves it unsigned.
            d = self._answer_session(session, inbound, reply, done=session.signed_on_now)
            d.addCallback(lambda _: self.kick(bank, resend=True) if session.signed_on else None)
            return d
        if isinstance(body, SignOff):
            session.signed_on = False  # at once: nothing more is dispatched to this link

            def still_signed_on() -> None:  # the sign-off was not recorded (91099): the bank asks again
                session.signed_on = True

            return self._answer_session(session, inbound, SignOffReply(result=90000), failed=still_signed_on)
        if isinstance(body, Reply) and head.msg_ref and head.msg_ref == session.probe_msg_id:
            return self._archive_only(session, inbound)  # the answer to our idle probe: routine, no outbox row
        if isinstance(body, Reply | StatusReply):
            return self._bank_reply(session, inbound)
        if isinstance(body, SignOnReply | SignOffReply):
            return self._archive_only(session, inbound)
        return self._request(session, inbound)

    def _answer_session(
        self,
        session: BankSession,
        inbound: Inbound,
        reply: Payload,
        done: Callable[[], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> defer.Deferred[None]:
        """Session-level requests (probe, sign-on, sign-off): archived, then `done`, then answered.

        With the store unavailable the request is answered 9120 91099 (nothing recorded, resend it), after
        `failed`, and the connection stays open.
        """
        head = inbound.message.head
        d = self.db.run(service.archive_inbound, session.bank_code, session.connection_id, inbound, self.now())

        def answered(_: Any) -> None:
            if done is not None:
                done()
            self._archive_out(session, self.send_reply(session, reply, head.msg_id))

        def unavailable(failure: Any) -> None:
            failure.trap(StoreUnavailable)
            log.error("store unavailable: %s", failure.value)
            if failed is not None:
                failed()
            self._temporary_failure(session, head.msg_no, head.msg_id)

        return d.addCallbacks(answered, unavailable)

    def _temporary_failure(self, session: BankSession, msg_no: str, msg_id: str) -> None:
        """Answer 9120 91099: the store is unavailable, nothing was recorded (not even this reply)."""
        reply = Reply(ori_msg_no=msg_no, result=int(ResultCode.TEMPORARY), add_word="暂时无法处理，请重发")
        self.send_reply(session, reply, msg_id)

    def _archive_only(self, session: BankSession, inbound: Inbound) -> defer.Deferred[None]:
        """Archive a message that needs no answer (a reply to us); with the store unavailable it is only logged."""
        d = self.db.run(service.archive_inbound, session.bank_code, session.connection_id, inbound, self.now())

        def unavailable(failure: Any) -> None:
            failure.trap(StoreUnavailable)
            log.error("store unavailable, %s not archived: %s", inbound.message.head.msg_id, failure.value)

        return d.addCallbacks(lambda _: None, unavailable)

    def _archive_out(self, session: BankSession, sent: Sent) -> None:
        """Archive a reply we wrote. Replies written while a batch is being archived wait for it and go together
        in the next transaction (group commit): one transaction per batch instead of one per reply."""
        assert session.bank_code is not None
        self._to_archive.append(
            service.OutboundFrame(
                session.bank_code, session.connection_id, sent.document, self.now(), sent.msg_id, sent.msg_no
            )
        )
        if not self._archiving:
            self._flush_archive()

    def _flush_archive(self) -> None:
        batch, self._to_archive = self._to_archive, []
        self._archiving = True
        d = self.db.run(service.archive_outbound_frames, batch)
        d.addErrback(lambda f: log.error("could not archive %d outbound replies: %s", len(batch), f.value))

        def next_batch(_: Any) -> None:
            self._archiving = False
            if self._to_archive:
                self._flush_archive()

        d.addBoth(next_batch)

    def _request(self, session: BankSession, inbound: Inbound) -> defer.Deferred[None]:
        """A business request (receipt, return, spending, statement): idempotent, one transaction, then reply."""
        bank = session.bank_code
        head = inbound.message.head
        d = self.run_retrying(service.handle_request, bank, session.connection_id, inbound)

        def replied(outcome: service.Outcome) -> None:
            reply = Reply(ori_msg_no=head.msg_no, result=outcome.result, add_word=outcome.add_word)
            self._archive_out(session, self.send_reply(session, reply, head.msg_id))
            self._outcome(outcome.events)
            if outcome.kick:
                self.kick(bank, refill=True)  # type: ignore[arg-type]  # a receipt settled a message: room

        def unavailable(failure: Any) -> None:
            failure.trap(StoreUnavailable)
            log.error("store unavailable: %s", failure.value)
            self._temporary_failure(session, head.msg_no, head.msg_id)

        return d.addCallbacks(replied, unavailable)

    def _bank_reply(self, session: BankSession, inbound: Inbound) -> defer.Deferred[None]:
        """A 9120 or 9102 answering one of our messages: settles the outbox row and the voucher."""
        bank = session.bank_code
        assert bank is not None
        msg_ref = inbound.message.head.msg_ref
        d = self.run_retrying(service.handle_bank_reply, bank, session.connection_id, inbound)

        def done(outcome: service.Outcome) -> None:
            # That message is answered, wherever it was written: it leaves the in-flight window. A duplicate
            # answer, or one to a message this process did not write, finds nothing to remove.
            for live in self.sessions.get(bank, []):
                live.unanswered.discard(msg_ref)
            self._outcome(outcome.events)
            self.kick(bank, refill=not outcome.kick)  # a 9102 "never received" made a message due again

        def unavailable(failure: Any) -> None:
            failure.trap(StoreUnavailable)
            log.error("store unavailable: %s", failure.value)

        d.addCallback(done)
        d.addErrback(unavailable)
        return d.addCallback(lambda _: None)

    # --- bytes out: the dispatcher ----------------------------------------------------------------------------

    def kick(self, bank: str, resend: bool = False, *, refill: bool = False) -> None:
        """Something for `bank` may be due: run its dispatcher (one run at a time per bank).

        `refill`: nothing became due, an answer only made room in the in-flight window; skipped when the
        bank's last claim left nothing behind (see `_drained`).
        """
        if refill and not resend and bank in self._drained:
            return
        if bank in self._dispatching:
            self._again.add(bank)
            return
        sessions = self.live_sessions(bank)
        if not sessions:
            return
        window = sum(max(0, self.config.session.max_in_flight - s.in_flight) for s in sessions)
        self._dispatching.add(bank)
        self._drained.discard(bank)  # until a claim says otherwise
        if window <= 0:
            d = self._prune_window(bank, sessions)
        else:
            d = self.db.run(service.claim_outbox, bank, self.now(), window, self.node_id, resend)
            d.addCallback(self._claimed, bank, window)
        d.addErrback(lambda f: log.error("dispatcher for %s failed: %s", bank, f.getTraceback()))
        d.addBoth(self._dispatch_done, bank)

    def _prune_window(self, bank: str, sessions: list[BankSession]) -> defer.Deferred[Any]:
        """The window is full: forget the messages that were settled without an answer on the wire (a receipt
        that overtook a lost acknowledgement, a voucher gone in doubt); if that freed room, dispatch again."""
        written = set().union(*(s.unanswered for s in sessions))
        d = self.db.run(service.still_unanswered, bank, written)

        def prune(still: set[str]) -> None:
            if still != written:
                for session in sessions:
                    session.unanswered &= still
                self._again.add(bank)

        return d.addCallback(prune)

    def _claimed(self, items: list[service.OutboxItem], bank: str, window: int) -> defer.Deferred[None] | None:
        if len(items) < window:
            self._drained.add(bank)
        return self._send_claimed(items, bank)

    def _send_claimed(self, items: list[service.OutboxItem], bank: str) -> defer.Deferred[None] | None:
        if not items:
            return None
        dialect = self.dialects[bank]
        wires: dict[int, bytes] = {}
        for item in items:
            if item.wire is None:
                try:
                    wires[item.id] = dialect.encode(item.message, self.signers[bank])
                except ProtocolError as exc:
                    log.error("cannot encode %s for %s: %s", item.msg_id, bank, exc)
                    continue
            else:
                wires[item.id] = item.wire
        d = self.db.run(service.mark_sent, bank, wires, self.now(), self.config.payments)

        def write(marked: service.Marked) -> None:
            sessions = self.live_sessions(bank)
            # Only what mark_sent recorded as sent goes out: a row cancelled or stopped after the claim stays home.
            for item in (i for i in items if i.id in marked.ids) if sessions else ():
                session = min(sessions, key=lambda s: s.in_flight) if len(sessions) > 1 else sessions[0]
                session.write_frame(encode_frame(dialect.framing, wires[item.id]))
                session.unanswered.add(item.msg_id)
            # (without a live session the rows are SENT and unacknowledged: they go again on reconnection)
            for kind, data in marked.events:
                self.emit(kind, data)

        return d.addCallback(write)

    def _dispatch_done(self, result: Any, bank: str) -> None:
        self._dispatching.discard(bank)
        if bank in self._again:
            self._again.discard(bank)
            self.clock.callLater(0, self.kick, bank)

    # --- time-driven work -------------------------------------------------------------------------------------

    def tick(self) -> defer.Deferred[Any]:
        """Deadlines (IN_DOUBT and status queries) and due resends; then kick every bank with work."""
        d: defer.Deferred[Any] = self.db.run(service.tick, self.now(), self.config.payments, self.config.node)

        def kick_all(events: list[tuple[str, dict[str, Any]]]) -> None:
            for kind, data in events:
                self.emit(kind, data)
            for bank in self.config.banks:
                self.kick(bank)

        d.addCallback(kick_all)
        d.addErrback(lambda f: log.error("tick failed: %s", f.value))
        return d

    def run_retrying(self, fn: Callable[..., T], *args: Any, attempts: int = 3) -> defer.Deferred[T]:
        """Run `fn(conn, *args, now)` on the store; a transaction that lost an optimistic race with another one
        (ConcurrentUpdate: the voucher changed under it, e.g. its ack and its receipt handled at once on
        PostgreSQL's several store threads) rolled back completely, so it is simply run again, with a fresh `now`;
        after `attempts` the store is treated as unavailable (the bank is answered 91099 and resends)."""

        def attempt(left: int) -> defer.Deferred[T]:
            d = self.db.run(fn, *args, self.now())

            def retry(failure: Any) -> Any:
                # IntegrityError: the same MsgId handled by two transactions at once (a resend on a new link
                # while the old link's frame is still in the queue); the rerun finds it recorded and answers the
                # same (PROTOCOL.md §7).
                # TransientConflict: PostgreSQL made it a deadlock victim or failed it for serialization (the
                # ticker, the dispatcher and replies lock vouchers and outbox rows in different orders).
                failure.trap(ConcurrentUpdate, IntegrityError, TransientConflict)
                if left <= 1:
                    raise StoreUnavailable(
                        f"gave up after {attempts} optimistic-concurrency conflicts: {failure.value}"
                    )
                return attempt(left - 1)

            return d.addErrback(retry)

        return attempt(attempts)

    def run_in_store(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Run a store function on the store thread (for the web API and the CLI helpers)."""
        return self.db.run(fn, *args)


def signing_pair_for(config: Config, bank: str) -> tuple[Path, Path]:
    """The gateway's (certificate, key) that signs messages to `bank`: the first pair whose key type the bank's
    dialect accepts (a detached-ECDSA dialect needs P-256, for example). Banks verify with that certificate.

    Raises:
        LocalError: no configured pair suits the dialect (re-create the instance, or add `alt_signing_*`).
    """
    accepted = registry.get(config.banks[bank].dialect).signature_methods
    for cert_path, key_path in config.signing_pairs():
        cert = load_certificate(cert_path)
        method = RSA_SHA256 if isinstance(cert.public_key(), rsa.RSAPublicKey) else ECDSA_SHA256
        if method in accepted:
            return cert_path, key_path
    raise LocalError(f"no gateway signing key of a type the {config.banks[bank].dialect} dialect accepts")


def signer_for(config: Config, bank: str) -> Signer:
    """The signer of messages to `bank` (see :func:`signing_pair_for`)."""
    cert_path, key_path = signing_pair_for(config, bank)
    return Signer(load_private_key(key_path), load_certificate(cert_path))


def peer_serial(session: BankSession) -> int | None:
    """The serial of the certificate the session's TLS peer presented (None without one)."""
    transport = session.transport
    peer = (
        transport.getPeerCertificate() if transport is not None and hasattr(transport, "getPeerCertificate") else None
    )
    if peer is None:
        return None
    cert: x509.Certificate = peer.to_cryptography() if hasattr(peer, "to_cryptography") else peer
    return cert.serial_number


class _Identity(ProtocolError):
    result_code = ResultCode.UNKNOWN_SENDER


class _Refused(ProtocolError):
    result_code = ResultCode.REFUSED


def _add_word(error: ProtocolError) -> str:
    text = getattr(error, "add_word", None) or str(error)
    return text[:200]


_ = timedelta
