"""The external sort: stable, any run size and fan-in, files only when needed, and used once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation.extsort import ExternalSorter


@settings(max_examples=200)
@given(
    keys=st.lists(st.text(alphabet="abc\x00é", max_size=3), max_size=300),
    run_records=st.integers(1, 40),
    block_records=st.integers(1, 9),
    fan_in=st.integers(2, 5),
    bulk=st.booleans(),
)
def test_sorted_output_is_a_stable_sort(
    keys: list[str], run_records: int, block_records: int, fan_in: int, bulk: bool
) -> None:
    """Whatever the sizes, the output is exactly Python's stable sort by the first element."""
    records = [(key, i) for i, key in enumerate(keys)]
    with ExternalSorter(run_records=run_records, block_records=block_records, fan_in=fan_in) as sorter:
        if bulk:
            sorter.extend(records)
        else:
            for record in records:
                sorter.add(record)
        assert len(sorter) == len(records)
        if bulk:
            assert list(sorter.sorted()) == sorted(records, key=lambda r: r[0])
        else:
            blocks = list(sorter.sorted_blocks())
            assert all(blocks)  # no empty list
            assert [r for block in blocks for r in block] == sorted(records, key=lambda r: r[0])


@settings(max_examples=100)
@given(
    keys=st.lists(st.text(alphabet="abc", max_size=3), max_size=200),
    run_records=st.integers(1, 20),
    block_records=st.integers(1, 9),
)
def test_input_in_key_order_ends_as_one_run(keys: list[str], run_records: int, block_records: int) -> None:
    """Sorted input is appended to one run, read back without a merge; stable, blocks of any size."""
    records = [(key, i) for i, key in enumerate(sorted(keys))]
    with ExternalSorter(run_records=run_records, block_records=block_records, fan_in=2) as sorter:
        sorter.extend(records)
        assert sorter.spilled_runs == (1 if len(records) >= run_records else 0)
        assert list(sorter.sorted()) == records


def test_a_run_continued_after_disorder_starts_a_new_run() -> None:
    with ExternalSorter(run_records=3, fan_in=10) as sorter:
        sorter.extend([("a", 1), ("c", 2), ("b", 3)])  # a run ending in "c"
        sorter.extend([("d", 4), ("e", 5), ("f", 6)])  # continues it: appended
        assert sorter.spilled_runs == 1
        sorter.extend([("c", 7), ("a", 8), ("b", 9)])  # starts below "f": a run of its own
        assert sorter.spilled_runs == 2
        sorter.add(("c", 10))  # stays in memory until sorted
        assert [r[1] for r in sorter.sorted()] == [1, 8, 3, 9, 2, 7, 10, 4, 5, 6]


def test_a_small_sort_stays_in_memory_and_a_large_one_spills(tmp_path: Path) -> None:
    with ExternalSorter(directory=str(tmp_path), run_records=10) as sorter:
        sorter.extend((str(i % 7), i) for i in range(9))
        assert sorter.spilled_runs == 0
    with ExternalSorter(directory=str(tmp_path), run_records=10, fan_in=3) as sorter:
        sorter.extend((str(i % 7), i) for i in range(95))
        assert 0 < sorter.spilled_runs <= 3 * 2  # the cascade keeps runs few
        assert os.listdir(tmp_path) == []  # temporary files are unlinked at creation
        assert [r[1] for r in sorter.sorted()][:3] == [0, 7, 14]
    assert sorter.spilled_runs == 0  # closed


def test_many_runs_are_merged_in_passes() -> None:
    with ExternalSorter(run_records=2, fan_in=2) as sorter:
        for i in range(41):
            sorter.add((f"{(i * 7) % 41:02d}", i))
        out = list(sorter.sorted())
    assert [r[0] for r in out] == [f"{i:02d}" for i in range(41)]


def test_a_sorter_is_used_once() -> None:
    sorter = ExternalSorter()
    sorter.add(("a",))
    list(sorter.sorted())
    with pytest.raises(RuntimeError):
        sorter.add(("b",))
    with pytest.raises(RuntimeError):
        sorter.extend([("b",)])
    with pytest.raises(RuntimeError):
        sorter.sorted()


def test_sizes_must_be_sensible() -> None:
    with pytest.raises(ValueError):
        ExternalSorter(run_records=0)
    with pytest.raises(ValueError):
        ExternalSorter(fan_in=1)


def test_the_merge_skips_runs_without_blocks() -> None:
    from reconciliation.extsort import _merge

    assert list(_merge([iter([]), iter([[("a", 1), ("b", 1)]]), iter([[("a", 2)]])])) == [("a", 1), ("a", 2), ("b", 1)]
