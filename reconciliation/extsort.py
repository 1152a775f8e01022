"""An external merge sort of tuples in temporary files, so that staging a large statement keeps memory flat.

Records are tuples of plain values (str, int, None) ordered by their first element. They are buffered up to
`run_records`, sorted in memory, and written as a *run*: a temporary file of length-prefixed blocks of
:mod:`marshal`-ed lists (marshal is the fastest serializer of plain tuples in the standard library, and the
files never leave this process, so its lack of a stable format across Python versions does not matter).
Reading merges the runs a stretch at a time (:func:`_merge`), holding about one block of each in memory.

The sort is **stable**: records with equal keys come out in the order they were added. Runs are kept in input
order and only ever merged with their neighbours: when `fan_in` runs of one level have accumulated at the end
of the list they become one run of the next level (a binary-counter-like cascade, so a record is rewritten
only log_fan_in(n / run_records) times), and the merge breaks ties by run order.

A sorted buffer whose first key is not below the last key of the run before it is appended to that run
instead of starting a new one, so input that arrives in key order (or in long ordered stretches) ends as
few runs, and as exactly one when it is wholly in order, which is read back as it was written, without a
merge. :meth:`ExternalSorter.sorted_blocks` hands the output over a list at a time.

Memory is bounded by `run_records` records while adding, and by `fan_in` blocks of `block_records` records
while reading, whatever the number of records. A sort that never exceeds one run stays in memory and touches
no disk.
"""

from __future__ import annotations

import marshal
import os
import tempfile
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from operator import itemgetter
from types import TracebackType
from typing import IO, Any, Final

Record = tuple[Any, ...]

_LENGTH_BYTES: Final = 4
_MARSHAL_VERSION: Final = 4
_first: Final = itemgetter(0)


@dataclass(slots=True)
class _Run:
    """One sorted run on disk and its level in the merge cascade."""

    file: IO[bytes]
    level: int
    #: The key of the run's last record (None while it has none).
    last_key: Any = None


class ExternalSorter:
    """Stable sort of tuples by their first element, spilling sorted runs to temporary files.

    Use it once: :meth:`add` (or :meth:`extend`) every record, then iterate :meth:`sorted`, then
    :meth:`close` (or use it as a context manager). Temporary files are unlinked on creation, so nothing is
    left behind even if the process dies.

    Args:
        directory: Where temporary files go (None: the system's temporary directory).
        run_records: Records held in memory before a run is written.
        block_records: Records per block in a run file (the read buffer per run).
        fan_in: Runs merged at once (also bounds the number of open files per level).

    Raises:
        ValueError: a size that is not positive, or `fan_in` below 2.
    """

    def __init__(
        self,
        *,
        directory: str | None = None,
        run_records: int = 65_536,
        block_records: int = 256,
        fan_in: int = 32,
    ) -> None:
        if min(run_records, block_records) < 1 or fan_in < 2:
            raise ValueError("run_records and block_records must be positive and fan_in at least 2")
        self._directory = directory
        self._run_records = run_records
        self._block_records = block_records
        self._fan_in = fan_in
        self._buffer: list[Record] = []
        self._runs: list[_Run] = []
        self._count = 0
        self._reading = False

    def __len__(self) -> int:
        """Records added so far."""
        return self._count

    @property
    def spilled_runs(self) -> int:
        """Runs currently on disk (0 while everything fits in memory)."""
        return len(self._runs)

    def add(self, record: Record) -> None:
        """Add one record (a tuple of str, int, float, bytes or None, first element the key).

        Raises:
            RuntimeError: :meth:`sorted` has already been called.
        """
        if self._reading:
            raise RuntimeError("records cannot be added once the sorted output is being read")
        self._buffer.append(record)
        self._count += 1
        if len(self._buffer) >= self._run_records:
            self._spill()

    def extend(self, records: Iterable[Record]) -> None:
        """Add many records (faster than :meth:`add` one by one: the buffer is filled by C code).

        Raises:
            RuntimeError: :meth:`sorted` has already been called.
        """
        if self._reading:
            raise RuntimeError("records cannot be added once the sorted output is being read")
        iterator = iter(records)
        buffer = self._buffer
        while True:
            before = len(buffer)
            buffer.extend(islice(iterator, self._run_records - before))
            added = len(buffer) - before
            self._count += added
            if len(buffer) < self._run_records:
                return
            self._spill()
            buffer = self._buffer

    def sorted(self) -> Iterator[Record]:
        """Every record added, in stable key order.

        Raises:
            RuntimeError: called a second time (or after :meth:`sorted_blocks`).
        """
        return chain.from_iterable(self.sorted_blocks())

    def sorted_blocks(self) -> Iterator[list[Record]]:
        """Every record added, in stable key order, as consecutive lists (of no fixed length, none empty).

        The same records as :meth:`sorted`, handed over a list at a time so that a reader that works on
        stretches (the matcher) does not pay for a step of Python code per record.

        Raises:
            RuntimeError: called a second time (or after :meth:`sorted`).
        """
        if self._reading:
            raise RuntimeError("the sorted output can be read only once")
        self._reading = True
        if not self._runs:
            buffer, self._buffer = self._buffer, []
            buffer.sort(key=_first)
            return iter((buffer,) if buffer else ())
        if self._buffer:
            self._spill()
        while len(self._runs) > self._fan_in:
            groups = [self._runs[i : i + self._fan_in] for i in range(0, len(self._runs), self._fan_in)]
            self._runs = [self._merge_into_run(group) for group in groups]
        if len(self._runs) == 1:
            return self._blocks(self._runs[0])
        return _merge_blocks([self._blocks(run) for run in self._runs])

    def close(self) -> None:
        """Close and so delete every temporary file; drop the buffer."""
        for run in self._runs:
            run.file.close()
        self._runs = []
        self._buffer = []

    def __enter__(self) -> ExternalSorter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- runs -------------------------------------------------------------------------------------------------

    def _spill(self) -> None:
        buffer = self._buffer
        self._buffer = []
        buffer.sort(key=_first)
        last = self._runs[-1] if self._runs else None
        if last is not None and last.last_key is not None and not buffer[0][0] < last.last_key:
            # The sorted buffer continues the last run (input that comes in key order, or nearly): append it,
            # so that such input ends as one run, read back without a merge.
            last.file.seek(0, os.SEEK_END)
            self._write_blocks(last, (buffer,))
            return
        self._runs.append(self._new_run((buffer,), level=0))
        # Cascade: fan_in runs of one level at the end of the list become one run of the next level.
        while len(self._runs) >= self._fan_in and len({run.level for run in self._runs[-self._fan_in :]}) == 1:
            group = self._runs[-self._fan_in :]
            del self._runs[-self._fan_in :]
            self._runs.append(self._merge_into_run(group))

    def _merge_into_run(self, group: list[_Run]) -> _Run:
        if len(group) == 1:
            return group[0]
        merged = self._new_run(_merge_blocks([self._blocks(run) for run in group]), level=group[0].level + 1)
        for run in group:
            run.file.close()
        return merged

    def _new_run(self, lists: Iterable[list[Record]], *, level: int) -> _Run:
        # Closed by close() (or by _merge_into_run once merged), not by a with block: the run outlives this call.
        file = tempfile.TemporaryFile(dir=self._directory, prefix="tgw-reconcile-")  # noqa: SIM115
        run = _Run(file, level)
        self._write_blocks(run, lists)
        return run

    def _write_blocks(self, run: _Run, lists: Iterable[list[Record]]) -> None:
        """Write sorted lists of records at the end of `run` as blocks of `block_records`; rewind it."""
        size = self._block_records
        file = run.file
        pending: list[Record] = []
        for stretch in lists:
            records = pending + stretch if pending else stretch
            whole = len(records) - len(records) % size
            for i in range(0, whole, size):
                self._write_block(file, records[i : i + size])
            if whole:
                run.last_key = records[whole - 1][0]
            pending = records[whole:]
        if pending:
            self._write_block(file, pending)
            run.last_key = pending[-1][0]
        file.seek(0)

    @staticmethod
    def _write_block(file: IO[bytes], block: list[Record]) -> None:
        data = marshal.dumps(block, _MARSHAL_VERSION)
        file.write(len(data).to_bytes(_LENGTH_BYTES, "little"))
        file.write(data)

    @staticmethod
    def _blocks(run: _Run) -> Iterator[list[Record]]:
        file = run.file
        while header := file.read(_LENGTH_BYTES):
            block: list[Record] = marshal.loads(file.read(int.from_bytes(header, "little")))
            yield block


def _merge(sources: list[Iterator[list[Record]]]) -> Iterator[Record]:
    """The records of :func:`_merge_blocks`, one at a time."""
    return chain.from_iterable(_merge_blocks(sources))


def _merge_blocks(sources: list[Iterator[list[Record]]]) -> Iterator[list[Record]]:
    """Stable k-way merge of sorted runs read as blocks: whole stretches at a time, sorted by C code.

    A run whose file is not yet exhausted may still hold any key from the end of its buffered block on; the
    smallest such end is the *bound*, and every buffered record below it is final. Those are taken from every
    buffer, concatenated in run order and sorted: Timsort merges presorted stretches in near-linear time,
    and being stable keeps equal keys in run order. The runs whose block ended at the bound are then refilled.
    This is several times faster than :func:`heapq.merge`, which steps through Python code for every record.
    """
    buffers: list[list[Record]] = []
    starts: list[int] = []
    feeds: list[Iterator[list[Record]] | None] = []
    for source in sources:
        block = next(source, None)
        if block:
            buffers.append(block)
            starts.append(0)
            feeds.append(source)
    while buffers:
        ends = [buffer[-1][0] for buffer, feed in zip(buffers, feeds, strict=True) if feed is not None]
        taken: list[Record] = []
        pieces = 0
        if ends:
            bound = min(ends)
            for i, buffer in enumerate(buffers):
                cut = bisect_left(buffer, bound, lo=starts[i], key=_first)
                if cut > starts[i]:
                    taken += buffer[starts[i] : cut]
                    starts[i] = cut
                    pieces += 1
        else:  # every run is wholly buffered: the rest is final
            for i, buffer in enumerate(buffers):
                taken += buffer[starts[i] :]
                pieces += 1
            buffers = []
        if pieces > 1:
            taken.sort(key=_first)
        if taken:
            yield taken
        for i in range(len(buffers) - 1, -1, -1):
            feed = feeds[i]
            if feed is not None and buffers[i][-1][0] == bound:
                more = next(feed, None)
                if more is None:
                    feeds[i] = None
                else:
                    buffers[i] = buffers[i][starts[i] :] + more
                    starts[i] = 0
            if starts[i] == len(buffers[i]):
                del buffers[i], starts[i], feeds[i]
