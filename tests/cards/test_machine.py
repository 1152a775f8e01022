"""The spending state machine: every state × event pair, and what any sequence of events can do."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cards.machine import FINAL, OPEN, TRANSITIONS, Event, IllegalTransition, State, next_state


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_pair_is_either_in_the_table_or_refused(state: State, event: Event) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition) as info:
            next_state(state, event)
        assert (info.value.state, info.value.event) == (state, event)
        assert state.value in str(info.value) and event.value in str(info.value)


def test_final_states_are_left_by_nothing() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] in FINAL]
    assert set(State) == FINAL | OPEN and not FINAL & OPEN


def test_review_happens_once() -> None:
    """Only a RECEIVED record can be approved or rejected."""
    for (state, event), _ in TRANSITIONS.items():
        if event in (Event.APPROVE, Event.REJECT):
            assert state is State.RECEIVED


@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_a_record_is_repaid_at_most_once_and_only_after_approval(events: list[Event]) -> None:
    state, repaid, approved = State.RECEIVED, 0, False
    for event in events:
        try:
            new = next_state(state, event)
        except IllegalTransition:
            continue
        approved = approved or new is State.APPROVED
        if new is State.REPAID:
            repaid += 1
            assert approved
        if state is State.REJECTED:
            pytest.fail("left REJECTED")
        state = new
    assert repaid <= 1
