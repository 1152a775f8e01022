"""The official-card spending state machine as a table (state × event → state), pure: no I/O, no clock.

A spending record arrives from its bank (7101) as RECEIVED. The budget unit reviews it once: APPROVED for
repayment from its zero-balance account, or REJECTED (personal spending the cardholder repays). Approved records
go out in a repayment voucher (8202, `BusinessTypeCode` 2): REPAYING. The bank's receipt settles each detail:
REPAID, or back to APPROVED ("approved, not repaid") with the bank's reason when that detail failed, so that the
next repayment takes it again. A repayment voucher that fails as a whole (refused by the bank, cancelled) also
brings its records back to APPROVED.

There is deliberately no FAILED state: a failed repayment changes nothing about the unit's decision, only about
the money, and the record must stay eligible for the next repayment. The failure is kept on the record (its
`reason` and `repay_failures`) and in its event log.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class State(StrEnum):
    """Where a spending record stands."""

    RECEIVED = "RECEIVED"  # reported by the bank, not reviewed yet
    APPROVED = "APPROVED"  # approved for repayment, not repaid (its quota is held, unless a repayment failed)
    REJECTED = "REJECTED"  # personal spending: the cardholder repays it (final)
    REPAYING = "REPAYING"  # in a repayment voucher on its way to the bank
    REPAID = "REPAID"  # the bank repaid it to the card (final)


class Event(StrEnum):
    """What can happen to a spending record."""

    APPROVE = "approve"  # the unit approves it for repayment (quota is held for it)
    REJECT = "reject"  # the unit refuses it, with a reason
    REPAY = "repay"  # it went into a repayment voucher
    REPAID = "repaid"  # the receipt says its detail was paid
    REPAY_FAILED = "repay_failed"  # its detail failed, or the whole voucher did (refused, cancelled)


S, E = State, Event

#: The whole machine; any other pair is refused.
TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (S.RECEIVED, E.APPROVE): S.APPROVED,
    (S.RECEIVED, E.REJECT): S.REJECTED,
    (S.APPROVED, E.REPAY): S.REPAYING,
    (S.REPAYING, E.REPAID): S.REPAID,
    (S.REPAYING, E.REPAY_FAILED): S.APPROVED,
}

FINAL: Final = frozenset({S.REJECTED, S.REPAID})
#: Not reimbursed yet: what an agency's review list shows and what deadlines are watched for.
OPEN: Final = frozenset({S.RECEIVED, S.APPROVED, S.REPAYING})


class IllegalTransition(Exception):
    """The event does not apply to a record in that state."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"{event.value} does not apply to a spending record in state {state.value}")
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
