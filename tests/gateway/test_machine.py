"""The voucher state machine: every state × event pair, and properties of any sequence of events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.payments.machine import FINAL, TRANSITIONS, Event, IllegalTransition, State, next_state


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_pair_is_either_in_the_table_or_refused(state: State, event: Event) -> None:
    """A pair in the table moves to its target; any other pair raises IllegalTransition naming both."""
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition) as info:
            next_state(state, event)
        assert (info.value.state, info.value.event) == (state, event)
        assert state.value in str(info.value)


RECON_CORRECTIONS = {Event.RECON_PAID, Event.RECON_FAILED, Event.RECON_RETURNED}


def test_final_states_only_move_by_returns() -> None:
    """Nothing leaves a final state except a return of a paid voucher, or a reconciliation correction."""
    for (state, event), _target in TRANSITIONS.items():
        if state in FINAL and event not in RECON_CORRECTIONS:
            assert (state, event) in {(State.PAID, Event.RETURNED_ALL), (State.PAID, Event.RETURNED_PART)}


def test_reconciliation_corrections_never_send_anything() -> None:
    """A correction only re-records a result the bank proved: it never leads back to sending (ACCEPTED, SENT)."""
    targets = {target for (_, event), target in TRANSITIONS.items() if event in RECON_CORRECTIONS}
    assert targets == {State.PAID, State.FAILED, State.RETURNED}
    sources = {state for (state, event) in TRANSITIONS if event in RECON_CORRECTIONS}
    assert sources <= {State.PAID, State.FAILED, State.IN_DOUBT}


def test_in_doubt_is_never_resent_blindly() -> None:
    """From IN_DOUBT only the bank's answer (receipt or status) moves a voucher; a deadline or dispatch does not."""
    moves = {event for (state, event) in TRANSITIONS if state is State.IN_DOUBT}
    assert Event.DISPATCH not in moves and Event.DEADLINE not in moves
    assert moves == {
        Event.ACK,
        Event.PAID,
        Event.FAILED,
        Event.STATUS_NOT_RECEIVED,
        Event.STATUS_PENDING,
        Event.OPERATOR_PAID,
        Event.OPERATOR_FAILED,
        Event.OPERATOR_NOT_RECEIVED,
        Event.RECON_PAID,
        Event.RECON_FAILED,
    }


@given(st.lists(st.sampled_from([e for e in Event if e not in RECON_CORRECTIONS]), max_size=30))
def test_any_event_sequence_pays_at_most_once(events: list[Event]) -> None:
    """Whatever arrives in whatever order, a voucher enters PAID at most once and never leaves a
    refusal for a payment (reconciliation corrections aside: they re-record, they do not pay)."""
    state, entered_paid = State.ACCEPTED, 0
    for event in events:
        try:
            new = next_state(state, event)
        except IllegalTransition:
            continue
        if new is State.PAID and state is not State.PAID:
            entered_paid += 1
        if state in (State.FAILED, State.REJECTED, State.CANCELLED):
            pytest.fail(f"left the final state {state}")
        state = new
    assert entered_paid <= 1
