"""kill -9 under load: the gateway process dies at seeded points, restarts, and nothing is lost or paid twice.

issue 3 item 8, DESIGN.md "Guarantees" ("crash at any point, restart, and the bank and the gateway agree"),
PROTOCOL.md §7. The gateway runs as an operator runs it (`tgw run`, a process of its own, on ports pinned so the
restarted one listens where the bank reconnects). The finance side submits vouchers through the HTTP API; the
simulated bank (in the test process, so its ledger survives the gateway) pays them, slowly for some, refuses
some and answers some twice. A seeded schedule kills the gateway with SIGKILL three to five times:

- `submitting`: while a stream of single submissions is going on, after the N-th answer (the next request is
  usually in flight: its answer is lost, and the voucher may or may not have been recorded);
- `receipts`: after a batch, as soon as the first of its receipts has been acknowledged (the rest are on the
  wire, half-recorded, unacknowledged);
- `burst`: right after a burst of submissions was answered (accepted, not yet sent, or sent and unanswered);
- `recorded`: a submission is recorded, and the gateway dies before the finance side has read the answer (the
  case a race rarely hits: committed, answer lost; its resubmission must be refused as already submitted).

After each kill the gateway is started again on the same instance and the bank reconnects by itself; the finance
side submits again, with the same voucher numbers, whatever it got no answer for: a 201, or a refusal saying the
voucher was already submitted, both mean accepted. At the end every voucher the finance side planned is
accepted and final, the gateway's ledger equals the bank's (PAID ⇔ paid with the same serial, date and amount,
FAILED ⇔ refused), the bank's journal holds one entry per voucher (nothing paid twice), every history chain
verifies, no outbox row is left PENDING or SENT, and the quota used is the sum of the live 8202 amounts.

The seed fixes the vouchers, what the bank does with each and the kill schedule; where a kill lands within the
gateway's work is up to the machine, and the assertions hold wherever it lands. A failure names the seed.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
from collections import deque
from collections.abc import Callable
from random import Random
from typing import Any, Final

import pytest
from sqlalchemy.engine import Connection

from gateway.store import repo
from protocols import jsonform
from protocols.messages import QuotaNotice, Voucher
from simulators.bank import SimulatedBank
from simulators.rules import Action, AnswerTwice, Delay, Match, Refuse, Rule, RuleSet
from tests.e2e.harness import (
    E2E,
    WAIT_S,
    GatewayProcess,
    LedgerSnapshot,
    WaitTimeout,
    authorized_voucher,
    direct_voucher,
    ledger_breaks,
    quota_notice,
    settled_snapshot,
    until_read,
)

#: The seeds of the run, fixed so CI runs the same schedules every time (a failing seed is kept here).
SEEDS: Final = (5, 2718, 60659)
#: Enough for the longest schedule (five kill points of at most ten vouchers each) and more after the last.
VOUCHERS: Final = 50
KILL_POINTS: Final = ("submitting", "receipts", "burst", "recorded")
#: Deadlines short enough that vouchers sent before a kill go in doubt while the gateway is down and are
#: settled by asking after the restart; resends come quickly.
PAYMENTS: Final[dict[str, Any]] = {
    "receipt_deadline_s": 2.0,
    "ack_timeout_s": 1.0,
    "resend_backoff_max_s": 2.0,
    "tick_s": 0.1,
    "status_query_interval_s": 0.5,
}
#: How long everything may take to settle after the last restart; correctness never depends on it.
SETTLE_S: Final = 60.0
GATEWAY_LOG_LINES: Final = 60
REFUSAL: Final = "收款账户已冻结"
#: What the bank does with a voucher → (its actions, whether the voucher ends PAID, weight).
BEHAVIOURS: Final[dict[str, tuple[tuple[Action, ...], bool, int]]] = {
    "pay": ((), True, 50),
    "slow": ((Delay(0.5),), True, 25),
    "refuse": ((Refuse(REFUSAL),), False, 10),
    "twice": ((AnswerTwice(),), True, 15),
}


@dataclasses.dataclass(frozen=True)
class Planned:
    voucher: Voucher
    behaviour: str

    @property
    def key(self) -> str:
        return str(self.voucher.key)


def plan(seed: int) -> tuple[list[Planned], list[tuple[str, int]]]:
    """The seed's vouchers with the bank's behaviour for each, and its kill schedule: (kill point, count)."""
    rng = Random(seed)
    names, weights = list(BEHAVIOURS), [w for _, _, w in BEHAVIOURS.values()]
    planned = []
    for n in range(VOUCHERS):
        if n % 5 in (1, 3):  # 8202 against the 5106's 500,000.00 yuan for agency 102003
            voucher = authorized_voucher(f"8202{seed % 10_000:04d}{n:08d}", rng.randrange(10_000, 2_000_000))
        else:
            amounts = tuple(rng.randrange(100, 5_000_000) for _ in range(rng.randint(1, 3)))
            voucher = direct_voucher(f"5201{seed % 10_000:04d}{n:08d}", amounts)
        planned.append(Planned(voucher, rng.choices(names, weights)[0]))
    count = rng.randint(3, 5)  # at least three different kill points in every run
    points = rng.sample(KILL_POINTS, min(count, len(KILL_POINTS)))
    points += [rng.choice(KILL_POINTS) for _ in range(count - len(points))]
    rng.shuffle(points)
    return planned, [(point, rng.randint(2, 5)) for point in points]


def bank_rules(planned: list[Planned]) -> RuleSet:
    """One rule per voucher that is not simply paid, matched by its number (not by arrival order)."""
    return RuleSet(
        [
            Rule(Match(vt_code=p.voucher.vt_code, voucher_no=p.voucher.voucher_no), BEHAVIOURS[p.behaviour][0])
            for p in planned
            if p.behaviour != "pay"
        ]
    )


class Finance:
    """The finance side: submits through the gateway's HTTP API and knows what was accepted and what is unknown.

    A submission whose answer was lost (the gateway died under it) is unknown, whether or not it was recorded;
    :meth:`resubmit` sends it again with the same voucher numbers, and a refusal saying the vouchers were already
    submitted means they were (the refusal names every voucher of the batch, which is all-or-none).
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.accepted: dict[str, Voucher] = {}
        self.unknown: list[list[Voucher]] = []  # batches whose answer was lost
        self.answered = 0
        self.lost = 0
        self.already = 0  # resubmissions answered "already submitted"
        self._changed = threading.Condition()

    def _send(self, path: str, body: dict[str, Any]) -> http.client.HTTPConnection:
        """POST JSON (the answer is read by the caller, or never); raises OSError if the gateway is not there."""
        connection = http.client.HTTPConnection(*self.address, timeout=WAIT_S)
        connection.request(
            "POST",
            f"/api{path}",
            body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        return connection

    def _call(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST JSON and read the answer; raises OSError or HTTPException when the gateway died before answering."""
        connection = self._send(path, body)
        try:
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    @staticmethod
    def _body(batch: list[Voucher]) -> dict[str, Any]:
        return {"vouchers": [{"bank": "ICBC", "voucher": jsonform.to_json(v)} for v in batch]}

    def grant(self, notice: QuotaNotice) -> None:
        status, answer = self._call("/quota-notices", {"bank": "ICBC", "notice": jsonform.to_json(notice)})
        assert status == 201, (status, answer)

    def submit(self, batch: list[Voucher]) -> bool:
        """Submit a batch in one request; False (and the batch is unknown) when the answer was lost."""
        try:
            status, answer = self._call("/vouchers", self._body(batch))
        except (OSError, http.client.HTTPException):
            with self._changed:
                self.unknown.append(batch)
                self.lost += 1
                self._changed.notify_all()
            return False
        keys = sorted(str(v.key) for v in batch)
        if status == 201:
            assert sorted(a["key"] for a in answer["accepted"]) == keys, answer
        else:
            problems = answer.get("problems", []) if isinstance(answer, dict) else []
            already = [p for p in problems if "already submitted" in p["message"]]
            assert status == 400 and problems and len(already) == len(problems) == len(batch), (status, answer)
            self.already += 1
        with self._changed:
            self.accepted.update((str(v.key), v) for v in batch)
            self.answered += 1
            self._changed.notify_all()
        return True

    def submit_unread(self, batch: list[Voucher]) -> http.client.HTTPConnection:
        """Send a batch and leave its answer unread (close the connection returned once the gateway is dead):
        the batch is unknown to the finance side, whatever the gateway did with it."""
        connection = self._send("/vouchers", self._body(batch))
        self.unknown.append(batch)
        self.lost += 1
        return connection

    def resubmit(self) -> None:
        """Submit again, with the same numbers, every batch whose answer was lost (the gateway is up again)."""
        unknown, self.unknown = self.unknown, []
        for batch in unknown:
            assert self.submit(batch), f"no answer to a resubmission of {[str(v.key) for v in batch]}"

    def stream(self, pending: deque[Voucher], limit: int) -> threading.Thread:
        """Submit up to `limit` of `pending`, one at a time, on a thread of its own, until an answer is lost."""

        def run() -> None:
            for _ in range(limit):
                if not pending or not self.submit([pending.popleft()]):
                    return

        thread = threading.Thread(target=run, name="finance-stream", daemon=True)
        thread.start()
        return thread

    def wait_answered(self, count: int, lost: int) -> None:
        """Until `count` submissions in all have been answered (or one more than `lost` lost its answer)."""
        with self._changed:
            ok = self._changed.wait_for(lambda: self.answered >= count or self.lost > lost, timeout=WAIT_S)
        assert ok, f"only {self.answered} submissions answered of {count} within {WAIT_S:g} s"


def take(pending: deque[Voucher], count: int) -> list[Voucher]:
    return [pending.popleft() for _ in range(min(count, len(pending)))]


def receipt_acknowledged(bank: SimulatedBank) -> Callable[[], bool]:
    """A condition: the gateway has acknowledged one more of the bank's messages (a receipt) than now."""
    acked = bank.stats.acks_received
    return lambda: bank.stats.acks_received > acked


def recorded(batch: list[Voucher]) -> Callable[[Connection], bool]:
    """A store condition: every voucher of `batch` is recorded."""
    return lambda conn: all(repo.get_voucher_by_key(conn, v.key) is not None for v in batch)


def restart(e2e: E2E, bank: SimulatedBank, finance: Finance, connections_before: int, run: str) -> GatewayProcess:
    """Start the gateway again on the same instance and ports; wait until the bank has signed on to it."""
    gateway = e2e.run_process()
    finance.address = gateway.web_address
    e2e.until(
        lambda: (
            bank.stats.connections > connections_before and bank.connection is not None and bank.connection.signed_on
        ),
        f"the bank to sign on to the restarted gateway ({run})",
    )
    return gateway


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_killed_at_random_points_under_load_the_gateway_loses_nothing_and_pays_nothing_twice(
    e2e: E2E, seed: int
) -> None:
    """SIGKILL 3–5 times under load, restart on the same ports: every voucher final, the ledgers equal."""
    planned, kills = plan(seed)
    run = f"seed {seed}, kills {kills}, {e2e.instance.backend}"
    print(f"crash run: {run}")  # shown with the failure: rerun with this seed
    e2e.instance.fix_ports()
    gateway = e2e.run_process(payments=PAYMENTS)
    finance = Finance(e2e.instance.config().api_token)
    finance.address = gateway.web_address
    bank = e2e.bank(address=gateway.bank_address, rules=bank_rules(planned), seed=seed)
    finance.grant(quota_notice())
    pending = deque(p.voucher for p in planned)

    for point, count in kills:
        if point == "submitting":
            answered, lost = finance.answered, finance.lost
            stream = finance.stream(pending, count + 3)  # killed after `count` answers, usually mid-request
            finance.wait_answered(answered + count, lost)
            connections = bank.stats.connections
            gateway.kill()
            stream.join(WAIT_S)
            assert not stream.is_alive(), f"{run}: the submissions did not stop with the gateway"
        elif point == "receipts":
            assert finance.submit(take(pending, count + 3)), f"{run}: a batch went unanswered"
            e2e.until(receipt_acknowledged(bank), f"a receipt to be acknowledged ({run})")
            connections = bank.stats.connections
            gateway.kill()
        elif point == "burst":
            for _ in range(count):
                assert finance.submit(take(pending, 2)), f"{run}: a burst went unanswered"
            connections = bank.stats.connections
            gateway.kill()
        else:  # recorded, and the answer lost
            batch = take(pending, count)
            unread = finance.submit_unread(batch)
            until_read(e2e, recorded(batch), f"the unread submission to be recorded ({run})")
            connections = bank.stats.connections
            gateway.kill()
            unread.close()
        gateway = restart(e2e, bank, finance, connections, run)
        finance.resubmit()
    while pending:
        assert finance.submit(take(pending, 5)), f"{run}: a submission went unanswered"

    expected = {p.key: p.voucher for p in planned}
    assert finance.accepted.keys() == expected.keys(), f"{run}: not every voucher was accepted"
    try:
        snapshot: LedgerSnapshot = until_read(
            e2e,
            settled_snapshot(expected),
            f"every voucher to be final and every message answered ({run})",
            timeout_s=SETTLE_S,
        )
    except WaitTimeout as exc:  # what the last gateway process said tells why
        tail = "".join(gateway.lines[-GATEWAY_LOG_LINES:])
        raise WaitTimeout(f"{exc}\nthe last gateway process's log, last lines:\n{tail}") from None
    problems = ledger_breaks(snapshot, bank, expected)
    for p in planned:
        want = "PAID" if BEHAVIOURS[p.behaviour][1] else "FAILED"
        if snapshot.vouchers[p.key].state != want:
            problems.append(f"{p.key} ({p.behaviour}): {snapshot.timeline(p.key)}, expected {want}")
    assert not problems, f"{run}: the gateway and the bank disagree:\n  " + "\n  ".join(problems)
    print(
        f"crash run {run}: {finance.lost} answers lost, {finance.already} resubmissions already recorded, "
        f"{bank.stats.connections} bank connections, "
        f"{sum('deadline:IN_DOUBT' in e.events for e in snapshot.vouchers.values())} vouchers went in doubt"
    )
