"""The voucher state machine as a table (state × event → state), pure: no I/O, no clock.

DESIGN.md "A direct payment, end to end": ACCEPTED → SENT → DELIVERED → PAID | FAILED, REJECTED by the bank's
nak, IN_DOUBT when no answer came by the deadline, RETURNED by a 2252 that returns everything, CANCELLED before
sending. Any pair not in the table is refused (:class:`IllegalTransition`) and the caller records the refusal.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class State(StrEnum):
    """Where a voucher stands."""

    ACCEPTED = "ACCEPTED"  # validated and recorded; its outbound message is in the outbox
    SENT = "SENT"  # handed to a live session of its bank
    DELIVERED = "DELIVERED"  # the bank acknowledged it (9120 with 90000)
    PAID = "PAID"  # the bank's receipt says paid
    FAILED = "FAILED"  # the bank's receipt (or status) says refused
    REJECTED = "REJECTED"  # the bank refused the message itself (9120 with an error code)
    IN_DOUBT = "IN_DOUBT"  # no answer by the deadline: ask the bank, never resend blindly
    RETURNED = "RETURNED"  # the payee bank returned the whole amount (2252)
    CANCELLED = "CANCELLED"  # withdrawn by an operator before it was sent


class Event(StrEnum):
    """What can happen to a voucher."""

    DISPATCH = "dispatch"  # the outbox handed it to a session
    CANCEL = "cancel"  # an operator withdrew it
    ACK = "ack"  # 9120 90000 from the bank
    NAK = "nak"  # 9120 with a final error code from the bank
    PAID = "receipt_paid"  # receipt with XResult S
    FAILED = "receipt_failed"  # receipt with XResult F
    DEADLINE = "deadline"  # no receipt by the deadline
    STATUS_NOT_RECEIVED = "status_not_received"  # 9102 XStatus 0: safe to send again (same MsgId)
    STATUS_PENDING = "status_pending"  # 9102 XStatus 1: still in doubt, ask again later
    RETURNED_ALL = "returned_all"  # a 2252 brought the whole paid amount back
    RETURNED_PART = "returned_part"  # a 2252 brought part of it back
    # An operator settling an in-doubt voucher from what the bank said out of band (dashboard, API, CLI):
    # distinct from the bank's own receipt and status events, so that the history says who decided.
    OPERATOR_PAID = "operator_paid"  # the bank confirmed it paid
    OPERATOR_FAILED = "operator_failed"  # the bank confirmed it refused
    OPERATOR_NOT_RECEIVED = "operator_not_received"  # the bank never received it: send it again (same MsgId)
    # A reconciliation break resolved, with a second operator's approval (four eyes), that corrects the ledger
    # to what the bank's statement proved: the only way a final state changes after the fact.
    RECON_PAID = "recon_paid"  # recorded as failed, the bank's statement shows it paid
    RECON_FAILED = "recon_failed"  # recorded as paid, the bank's statement shows it failed
    RECON_RETURNED = "recon_returned"  # recorded as paid, the bank's statement shows it returned in full


S, E = State, Event
_IN_FLIGHT: Final = (S.SENT, S.DELIVERED, S.IN_DOUBT)

#: The whole machine. A status reply of "paid" or "refused" is applied as the receipt it stands for.
TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (S.ACCEPTED, E.DISPATCH): S.SENT,
    (S.ACCEPTED, E.CANCEL): S.CANCELLED,
    (S.SENT, E.DISPATCH): S.SENT,  # a resend on reconnection, same MsgId
    (S.SENT, E.ACK): S.DELIVERED,
    (S.SENT, E.NAK): S.REJECTED,
    (S.DELIVERED, E.ACK): S.DELIVERED,  # a duplicate acknowledgement
    (S.IN_DOUBT, E.ACK): S.IN_DOUBT,  # a late acknowledgement settles nothing about the payment
    (S.SENT, E.DEADLINE): S.IN_DOUBT,
    (S.DELIVERED, E.DEADLINE): S.IN_DOUBT,
    (S.IN_DOUBT, E.STATUS_NOT_RECEIVED): S.ACCEPTED,
    (S.IN_DOUBT, E.STATUS_PENDING): S.IN_DOUBT,
    (S.PAID, E.RETURNED_ALL): S.RETURNED,
    (S.PAID, E.RETURNED_PART): S.PAID,
    **{(state, E.PAID): S.PAID for state in _IN_FLIGHT},  # receipts may overtake the acknowledgement
    **{(state, E.FAILED): S.FAILED for state in _IN_FLIGHT},
    (S.IN_DOUBT, E.OPERATOR_PAID): S.PAID,
    (S.IN_DOUBT, E.OPERATOR_FAILED): S.FAILED,
    (S.IN_DOUBT, E.OPERATOR_NOT_RECEIVED): S.ACCEPTED,
    (S.FAILED, E.RECON_PAID): S.PAID,
    (S.IN_DOUBT, E.RECON_PAID): S.PAID,
    (S.PAID, E.RECON_FAILED): S.FAILED,
    (S.IN_DOUBT, E.RECON_FAILED): S.FAILED,
    (S.PAID, E.RECON_RETURNED): S.RETURNED,
}

FINAL: Final = frozenset({S.PAID, S.FAILED, S.REJECTED, S.RETURNED, S.CANCELLED})


class IllegalTransition(Exception):
    """The event does not apply to a voucher in that state (answered 91006 and recorded)."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"{event.value} does not apply to a voucher in state {state.value}")
        self.state = state
        self.event = event


def next_state(state: State, event: Event) -> State:
    """The state after `event`.

    Raises:
        IllegalTransition: the pair is not in :data:`TRANSITIONS`.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None
