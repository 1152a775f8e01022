"""The nightly run's decision (gateway.reconcile.scheduler.next_run): pure, no clock of its own.

Hypothesis drives a process through time, waking when the decision says: it fires once per local day at
`nightly_at`, for the previous calendar day, never twice and never skipping one, in Asia/Shanghai and in zones
with daylight saving, odd offsets, and even a day that did not exist (Pacific/Apia, 2011-12-30).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.reconcile.scheduler import ONE_DAY, fire_time, latest_due, next_run

SHANGHAI = ZoneInfo("Asia/Shanghai")
TWO = time(2, 0)
ZONES = (
    "Asia/Shanghai",
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # a half-hour daylight-saving shift
    "Asia/Kathmandu",  # +05:45
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Kiritimati",  # +14
    "America/St_Johns",  # -03:30 / -02:30
    "Pacific/Apia",  # skipped 2011-12-30 entirely
)

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
wall_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 59]))


def shanghai(y: int, m: int, d: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=SHANGHAI)


def test_a_gateway_started_after_two_runs_yesterday_at_once() -> None:
    now = shanghai(2026, 11, 24, 9, 15)
    run = next_run(now, TWO, SHANGHAI, None)
    assert run.at == now and run.check_date == date(2026, 11, 23)


def test_a_gateway_started_before_two_owes_the_night_before_then_fires_at_two() -> None:
    now = shanghai(2026, 11, 24, 1, 59, 59)
    first = next_run(now, TWO, SHANGHAI, None)
    assert first.at == now and first.check_date == date(2026, 11, 22)  # normally finished already: a no-op
    second = next_run(now, TWO, SHANGHAI, first.check_date)
    assert second.at == shanghai(2026, 11, 24, 2, 0) and second.check_date == date(2026, 11, 23)
    assert second.at == datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def test_after_a_run_the_next_is_at_two_the_day_after() -> None:
    now = shanghai(2026, 11, 24, 2, 0)
    run = next_run(now, TWO, SHANGHAI, date(2026, 11, 23))
    assert run == next_run(shanghai(2026, 11, 24, 23, 59), TWO, SHANGHAI, date(2026, 11, 23))
    assert run.at == shanghai(2026, 11, 25, 2, 0) and run.check_date == date(2026, 11, 24)


def test_a_paused_process_catches_up_each_missed_date_in_order() -> None:
    now = shanghai(2026, 11, 28, 8, 0)  # last ran 2026-11-23, then the machine slept four days
    done = date(2026, 11, 23)
    fired = []
    while (run := next_run(now, TWO, SHANGHAI, done)).at <= now:
        fired.append(run.check_date)
        done = run.check_date
    assert fired == [date(2026, 11, d) for d in (24, 25, 26, 27)]
    assert run.at == shanghai(2026, 11, 29, 2, 0)


def test_a_clock_set_back_waits_rather_than_running_again() -> None:
    run = next_run(shanghai(2026, 11, 20, 12, 0), TWO, SHANGHAI, date(2026, 11, 23))
    assert run.check_date == date(2026, 11, 24) and run.at == shanghai(2026, 11, 25, 2, 0)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_run(datetime(2026, 11, 24, 2, 0), TWO, SHANGHAI, None)


def test_wall_times_in_a_gap_or_a_fold() -> None:
    new_york = ZoneInfo("America/New_York")
    # 02:30 does not exist on 2026-03-08 in New York: it fires when the clock shows 03:30 (EDT), 07:30 UTC
    assert fire_time(date(2026, 3, 8), time(2, 30), new_york) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    # 01:30 exists twice on 2026-11-01: the first one (EDT), 05:30 UTC
    assert fire_time(date(2026, 11, 1), time(1, 30), new_york) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


@given(now=instants, at=wall_times)
def test_latest_due_in_shanghai(now: datetime, at: time) -> None:
    """No daylight saving in Shanghai: yesterday once `at` has passed today, the day before until then."""
    local = now.astimezone(SHANGHAI)
    expected = local.date() - (ONE_DAY if local.time() >= at else 2 * ONE_DAY)
    assert latest_due(now, at, SHANGHAI) == expected


@given(
    start=instants,
    at=wall_times,
    zone=st.sampled_from(ZONES),
    naps=st.lists(st.floats(min_value=0, max_value=3 * 86_400), min_size=1, max_size=40),
)
def test_fires_once_per_local_day_for_the_previous_date(
    start: datetime, at: time, zone: str, naps: list[float]
) -> None:
    """A process started at `start` wakes at arbitrary times (spurious wake-ups, long sleeps) and runs whatever
    the decision says is due: each check date at most once, consecutive dates, each fired at or after `at` on the
    local day after its check date (never before), the first one being the latest due at the start."""
    tz = ZoneInfo(zone)
    now, done = start, None
    fired: list[tuple[date, datetime]] = []
    for nap in naps:
        while (run := next_run(now, at, tz, done)).at <= now:
            fired.append((run.check_date, now))
            done = run.check_date
        assert run.at > now and run.check_date == (done or date.min) + ONE_DAY
        now = now + timedelta(seconds=nap)
    dates = [d for d, _ in fired]
    assert dates[0] == latest_due(start, at, tz)
    assert dates == [dates[0] + n * ONE_DAY for n in range(len(dates))]  # none twice, none skipped
    for check_date, when in fired[1:]:
        assert when >= fire_time(check_date + ONE_DAY, at, tz)  # never early
    for check_date, when in fired:
        assert when < fire_time(check_date + 2 * ONE_DAY, at, tz) or check_date < dates[-1]  # only a backlog lags


@given(start=instants, at=wall_times, zone=st.sampled_from(ZONES))
def test_woken_exactly_when_told_it_fires_at_at_local_time_each_day(start: datetime, at: time, zone: str) -> None:
    """Woken exactly at each instant the decision gives, a process fires at `at` local time on the day after each
    check date (where that wall time exists; in a gap, as late as the gap is long), a day apart."""
    tz = ZoneInfo(zone)
    first = next_run(start, at, tz, None)
    done, now = first.check_date, start
    for _ in range(60):
        run = next_run(now, at, tz, done)
        assert run.check_date == done + ONE_DAY
        local = run.at.astimezone(tz)
        wall = datetime.combine(run.check_date + ONE_DAY, at)
        exists = datetime.combine(wall.date(), at, tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if exists == wall:
            assert local.replace(tzinfo=None) == wall
        else:  # a gap (or Apia's missing day): later than the wall time, never earlier
            assert local.replace(tzinfo=None) > wall
        now, done = run.at, run.check_date


def test_apia_runs_both_dates_around_its_missing_day() -> None:
    """2011-12-30 did not exist in Apia (UTC-10 → UTC+14): the runs for 12-29 and 12-30 both fall due at 02:00 on
    12-31, one after the other."""
    apia = ZoneInfo("Pacific/Apia")
    now = datetime(2011, 12, 29, 12, 0, tzinfo=apia)
    run = next_run(now, TWO, apia, date(2011, 12, 28))
    assert run.check_date == date(2011, 12, 29)
    after = next_run(run.at, TWO, apia, run.check_date)
    assert after.check_date == date(2011, 12, 30) and after.at == run.at
    assert run.at.astimezone(apia).replace(tzinfo=None) == datetime(2011, 12, 31, 2, 0)
