"""A bank session: the thin Twisted protocol around one TLS connection from a bank.

The session does transport work only (STYLE.md: a thin shell around a pure core): it binds the TLS peer's
certificate to a configured bank once the handshake completes, cuts the byte stream into frames with the
bank dialect's :class:`~protocols.framing.FrameDecoder`, hands each frame, in order, to the gateway's
:class:`~gateway.hub.Hub`, writes what the hub gives it, runs the idle probe (PROTOCOL.md §2), and enforces
the named caps: the frame maximum, the write-buffer maximum (a peer that does not read is cut off) and the
sign-on deadline.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from protocols.errors import FramingError
from protocols.framing import FrameDecoder, FrameSpec

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger(__name__)
_ids = itertools.count(1)


@implementer(IHandshakeListener)
class BankSession(Protocol):
    """One connection of one bank. Created by :class:`BankSessionFactory`."""

    def __init__(self, hub: Hub, clock: IReactorTime) -> None:
        self.hub = hub
        self.clock = clock
        self.connection_id = f"c{next(_ids)}"
        self.bank_code: str | None = None
        self.signed_on = False
        self.closing = False
        #: MsgIds of gateway-initiated messages written on this session and not yet answered (the in-flight
        #: window counts them; a resend of the same MsgId counts once).
        self.unanswered: set[str] = set()
        #: The MsgId of the last idle probe sent on this session: the bank's 9120 to it settles nothing.
        self.probe_msg_id: str | None = None
        self._decoder: FrameDecoder | None = None
        self._queue: defer.Deferred[None] = defer.succeed(None)
        self._idle: IDelayedCall | None = None
        self._probe: IDelayedCall | None = None
        self._sign_on: IDelayedCall | None = None
        self._bytes_queued = 0

    @property
    def in_flight(self) -> int:
        """Gateway-initiated messages written on this session and not yet answered."""
        return len(self.unanswered)

    # --- connection lifecycle ---------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        limits = self.hub.config.session
        self._sign_on = self.clock.callLater(limits.sign_on_timeout_s, self._sign_on_expired)

    def handshakeCompleted(self) -> None:
        """Bind the verified peer certificate to a configured bank (PROTOCOL.md §1)."""
        peer = self.transport.getPeerCertificate() if self.transport is not None else None  # type: ignore[attr-defined]
        bank = self.hub.bank_for_certificate(peer)
        if bank is None:
            log.warning("%s: TLS peer is not a configured bank; closing", self.connection_id)
            self.hub.record_unknown_peer(self.connection_id, peer)
            self.close()
            return
        self.bank_code = bank
        spec: FrameSpec = self.hub.framing_for(bank)
        # [session] max_frame_bytes caps what a bank may send, below its dialect's own maximum; never above it
        # (the dialect's header may not express more) and at least 1 (config), so the spec stays valid.
        cap = min(spec.max_body_bytes, self.hub.config.session.max_frame_bytes)
        self._decoder = FrameDecoder(dataclasses.replace(spec, max_body_bytes=cap))
        self.hub.session_opened(self)
        self._touch()

    def connectionLost(self, reason: Failure = Failure(ConnectionError("lost"))) -> None:  # noqa: B008
        for call in (self._idle, self._probe, self._sign_on):
            if call is not None and call.active():
                call.cancel()
        if self.bank_code is not None:
            self.hub.session_closed(self)

    def close(self) -> None:
        """Close after what has been written is flushed."""
        self.closing = True
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """Cut the connection at once (a peer that does not read, or that failed the handshake)."""
        self.closing = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # --- bytes in ---------------------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._decoder is None or self.closing or self._decoder.error is not None:
            # before the handshake nothing can arrive; after close, or after a framing error (answered once,
            # then closing), nothing counts
            return
        self._touch()
        try:
            frames = self._decoder.feed(data)
        except FramingError as exc:
            # The frames completed in this chunk before the bad header are processed first: what the bank
            # sees must not depend on how TCP cut its bytes into chunks.
            frames = list(self._decoder.frames_before_error)
            error: FramingError | None = exc
        else:
            error = None
        for frame in frames:
            self._queue.addCallback(self._handle, frame)
        if error is not None:
            self._queue.addCallback(lambda _: self.hub.framing_error(self, error))

    def _handle(self, _: Any, frame: bytes) -> defer.Deferred[None]:
        if self.closing:
            return defer.succeed(None)
        d = self.hub.handle_frame(self, frame)
        d.addErrback(self._crashed)
        return d

    def _crashed(self, failure: Failure) -> None:
        log.error("%s: unexpected error handling a frame: %s", self.connection_id, failure.getTraceback())
        self.abort()

    # --- bytes out --------------------------------------------------------------------------------------------

    def write_frame(self, frame: bytes) -> None:
        """Write one already-framed message; a peer that lets the write buffer grow past the cap is cut off."""
        if self.transport is None or self.closing:
            return
        self.transport.write(frame)
        buffered = self._buffered_bytes()
        if buffered > self.hub.config.session.max_write_buffer_bytes:
            log.warning(
                "%s: %s is not reading (%d bytes buffered); cutting it off",
                self.connection_id,
                self.bank_code,
                buffered,
            )
            self.abort()

    def _buffered_bytes(self) -> int:
        """Bytes written and not yet taken by the kernel: the TLS layer's cleartext backlog plus the TCP
        transport's write buffer."""
        # TLSMemoryBIOProtocol keeps unsent application data in _appSendBuffer. The TCP transport
        # (twisted.internet.abstract.FileDescriptor) keeps `dataBuffer`, of which the first `offset` bytes have
        # already gone to the kernel, and later writes in `_tempDataBuffer` (`_tempDataLen` bytes).
        transport: Any = self.transport
        size = sum(len(chunk) for chunk in getattr(transport, "_appSendBuffer", None) or [])
        lower = getattr(transport, "transport", None)
        size += len(getattr(lower, "dataBuffer", b"")) - getattr(lower, "offset", 0)
        size += getattr(lower, "_tempDataLen", 0)
        return size

    # --- timers -----------------------------------------------------------------------------------------------

    def signed_on_now(self) -> None:
        """Sign-on accepted: stop the sign-on deadline and start the idle timer (probes go to signed-on links)."""
        self.signed_on = True
        if self._sign_on is not None and self._sign_on.active():
            self._sign_on.cancel()
        self._touch()

    def _sign_on_expired(self) -> None:
        if not self.signed_on:
            log.warning("%s: no sign-on within the deadline; closing", self.connection_id)
            self.close()

    def _touch(self) -> None:
        """Anything received: the peer is alive; restart the idle timer and forget a pending probe.

        The idle timer runs from the first sign-on: before it, the sign-on deadline is the only timer, and
        nothing but replies may go to the connection (PROTOCOL.md §4), a probe included.
        """
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        self._probe = None
        limits = self.hub.config.session
        if self._idle is not None and self._idle.active():
            self._idle.reset(limits.idle_timeout_s)
        elif self.signed_on:
            self._idle = self.clock.callLater(limits.idle_timeout_s, self._idle_expired)

    def _idle_expired(self) -> None:
        """Silent for the idle timeout: send a 9005 probe; no answer within the probe timeout closes.

        A link that signed off (and was not closed by the bank that asked) may not be probed: it is closed.
        """
        if self.closing:
            return
        if not self.signed_on:
            log.info("%s: %s silent after signing off; closing", self.connection_id, self.bank_code)
            self.close()
            return
        self.hub.send_probe(self)
        self._probe = self.clock.callLater(self.hub.config.session.probe_timeout_s, self._probe_expired)

    def _probe_expired(self) -> None:
        log.warning("%s: %s did not answer the probe; closing", self.connection_id, self.bank_code)
        self.abort()


class BankSessionFactory(ServerFactory):
    """Makes a :class:`BankSession` per accepted connection."""

    def __init__(self, hub: Hub, clock: IReactorTime) -> None:
        self.hub = hub
        self.clock = clock

    def buildProtocol(self, addr: Any) -> BankSession:
        return BankSession(self.hub, self.clock)
