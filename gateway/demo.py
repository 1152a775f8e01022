"""The engine of `tgw demo` and `tgw bench`: a fresh instance, the gateway, simulated banks and the feeder.

Everything runs in the caller's reactor. :func:`create_instance` makes an instance through the same code path
as `tgw init` (ports 0, so nothing is fixed); :class:`Simulation` starts the gateway on it, starts one
:class:`~simulators.bank.SimulatedBank` per configured bank in this process (or waits for banks that connect
from other processes, as `tgw bench` does), grants quota with one 5106 per bank so that authorized payments
(8202) are possible, feeds seeded vouchers from the :class:`~simulators.feeder.Feeder` at a fixed rate or in a
closed loop, and follows every voucher through the hub's `voucher` events. Once the vouchers are final it
reconciles the day with every bank over the link (:meth:`Simulation.reconcile`: 4005, the bank's paged 4006,
the matcher, the run stored, 2507 sent), the banks in parallel. :func:`run_demo` is the whole demo and
:func:`summary` builds its result, the one dictionary that `tgw demo --json` prints.

Only the command line starts simulators (DESIGN.md "The house"): this module is the command line's engine,
and nothing else in `gateway/` imports it.

Determinism: the feeder draws from `Random(seed)` and simulated bank *n* (in configuration order) from
`Random(seed + n)`; vouchers reach each bank in submission order, so which vouchers are generated, for how
much, and what each bank decides for each of them depend on the seed alone. Timing does not. With
`discrepancies`, each bank spoils its statements with `reconciliation.inject` from a generator of its own
seeded from the same seed, so the same seed injects the same discrepancies into the same lines, and the matcher
finds the same breaks.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from random import Random
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall

from banks import registry
from gateway import config as configuration
from gateway.config import Config
from gateway.hub import signing_pair_for
from gateway.payments import service
from gateway.reconcile.link import reconciler_of
from gateway.store.tables import vouchers
from protocols.errors import ValidationError
from protocols.messages import QuotaNotice, StatementDetail, Voucher
from protocols.signature import ECDSA_SHA256, RSA_SHA256
from reconciliation.inject import inject
from reconciliation.model import BreakClass
from simulators.bank import BankSetup, SimulatedBank, SpoiltStatement, StatementSpoiler
from simulators.feeder import Feeder
from simulators.rules import Delay, Match, Pay, Refuse, ReturnAfter, Rule, RuleSet

log = logging.getLogger(__name__)

#: The agent banks of a demo when `--banks` is not given (Nanning's three, DESIGN.md "What it is for").
DEFAULT_BANKS: Final = ("ICBC", "CCB", "BOCOM")
#: States a voucher does not leave on its own (RETURNED follows PAID only if the payee bank sends money back).
FINAL_STATES: Final = frozenset({"PAID", "FAILED", "REJECTED", "RETURNED", "CANCELLED"})
#: Every state, in the order the progress display and the summary show them.
STATES: Final = ("ACCEPTED", "SENT", "DELIVERED", "IN_DOUBT", "PAID", "FAILED", "REJECTED", "RETURNED", "CANCELLED")
#: Vouchers fed per second by default: slow enough to watch, fast enough to fill the table.
DEFAULT_RATE_PER_S: Final = 20.0
#: How many vouchers may be submitted and not final at once (backpressure on the feeder).
DEFAULT_WINDOW: Final = 512
#: The most vouchers submitted in one transaction (the finance side's batch).
DEFAULT_BATCH_MAX: Final = 50
#: How often the rate feeder wakes up.
FEED_INTERVAL_S: Final = 0.02
#: How long to wait for every bank to sign on.
SIGN_ON_TIMEOUT_S: Final = 30.0
#: The actor recorded in the history of what the demo submits.
ACTOR: Final = "demo:feeder"
#: The actor recorded as having asked for the day's statements.
RECONCILE_ACTOR: Final = "demo:reconcile"
#: How long one bank's reconciliation of the day may take (statement exchange, matching, storing, 2507).
RECONCILE_TIMEOUT_S: Final = 120.0
#: After Ctrl-C: how long the vouchers already submitted may take to become final before the day is reconciled.
SETTLE_ON_INTERRUPT_S: Final = 15.0
#: Details per 4006 page the demo banks send (small, so that a demo's statement comes in several pages).
STATEMENT_PAGE_SIZE: Final = 50
#: What `--discrepancies` injects into each statement: every class once (a statement of at least six lines,
#: one of them paid or failed, takes it) …
DISCREPANCIES_SMALL: Final = dict.fromkeys(BreakClass, 1)
#: … and, into a statement of :data:`LARGE_STATEMENT_LINES` lines or more, two of each class that takes a line
#: (a statement has one summary).
DISCREPANCIES: Final = {**dict.fromkeys(BreakClass, 2), BreakClass.SUMMARY_MISMATCH: 1}
LARGE_STATEMENT_LINES: Final = 40


class DemoError(Exception):
    """The demo cannot run (an instance cannot be created, a bank does not sign on, …); the message says why."""


# --- instance -------------------------------------------------------------------------------------------------


def dialect_for(code: str) -> str:
    """The dialect a demo bank speaks: its own (`icbc` for ICBC) when one is registered, else `standard`.

    Checked at run time against :data:`banks.registry.DIALECTS`, so a dialect added there is used at once.
    """
    own = code.lower()
    return own if own in registry.DIALECTS else "standard"


def parse_banks(text: str | None) -> list[tuple[str, str]]:
    """`ICBC,CCB:standard` → [("ICBC", dialect_for("ICBC")), ("CCB", "standard")]; None → the default banks.

    Raises:
        DemoError: an empty list, a bank named twice, or an unknown dialect.
    """
    if text is None:
        return [(code, dialect_for(code)) for code in DEFAULT_BANKS]
    banks: list[tuple[str, str]] = []
    for spec in (s.strip() for s in text.split(",")):
        if not spec:
            continue
        code, _, dialect = spec.partition(":")
        dialect = dialect or dialect_for(code)
        try:
            registry.get(dialect)
        except registry.UnknownDialect as exc:
            raise DemoError(f"--banks {spec}: {exc}") from None
        banks.append((code, dialect))
    codes = [c for c, _ in banks]
    if not banks or len(set(codes)) != len(codes):
        raise DemoError(f"--banks names each bank once, at least one: {text!r}")
    return banks


#: The signature method (protocols.signature) each key type of `tgw init --key-type` signs with.
KEY_METHODS: Final = {"rsa": RSA_SHA256, "ec": ECDSA_SHA256}
_KEY_NAMES: Final = {"rsa": "RSA", "ec": "ECDSA P-256"}


def _methods(dialect: str) -> frozenset[str]:
    """The signature methods a dialect accepts (every one when it does not say)."""
    methods: frozenset[str] = getattr(registry.get(dialect), "signature_methods", frozenset(KEY_METHODS.values()))
    return methods


def fit_key_type(banks: Sequence[tuple[str, str]], *, adjust: bool) -> tuple[list[tuple[str, str]], str, list[str]]:
    """The banks as given, RSA, and no notes: `tgw init` gives each bank a key of a type its dialect takes, and
    the gateway a signing key of each type (`gateway.hub.signing_pair_for`), so every dialect mix works."""
    return list(banks), "rsa", []


def create_instance(
    directory: Path,
    banks: Sequence[tuple[str, str]],
    *,
    database: str = "sqlite:///gateway.db",
    key_type: str = "rsa",
) -> Config:
    """A new instance in `directory` through `tgw init`'s own code path, listening on ports chosen by the OS.

    Raises:
        DemoError: `tgw init` refused (the directory already holds an instance, a bank code is invalid, …).
    """
    from gateway.commands import instance

    args = argparse.Namespace(
        dir=directory,
        bank=[f"{code}:{dialect}" for code, dialect in banks],
        node=configuration.DEFAULT_NODE,
        bank_port=0,
        web_port=0,
        database=database,
        key_type=key_type,
    )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = instance.init(args)
    if code != 0:
        raise DemoError(err.getvalue().strip().removeprefix("tgw: ") or f"tgw init {directory} failed")
    cfg = configuration.load(directory / "gateway.toml")
    check_keys(cfg)
    return cfg


def check_keys(cfg: Config) -> None:
    """Every bank's dialect accepts the gateway's signing key and the bank's own key (else nothing would sign on).

    Raises:
        DemoError: naming the bank, its dialect and the key it was given.
    """
    from certs.pki import key_type_of, load_certificate

    for code, bank in cfg.banks.items():
        methods = _methods(bank.dialect)
        gateway_cert = signing_pair_for(cfg, code)[0]
        for whose, cert in (("the gateway's signing", gateway_cert), (f"{code}'s", bank.signing_cert)):
            key_type = key_type_of(load_certificate(cert).public_key()).value
            if KEY_METHODS.get(key_type) not in methods:
                raise DemoError(
                    f"{code}:{bank.dialect} cannot sign or verify with {whose} key ({_KEY_NAMES[key_type]})"
                )


def bank_setup(cfg: Config, code: str, address: tuple[str, int]) -> BankSetup:
    """How bank `code` of an instance connects: its own certificate and key, the CA, the gateway's signing
    certificate (pinned), its configured dialect, and the gateway's bank address."""
    host, port = address
    return BankSetup(
        code=code,
        host=host,
        port=port,
        node=cfg.node,
        ca_cert=cfg.ca_cert,
        cert=cfg.directory / "pki" / "banks" / code / "cert.pem",
        key=cfg.directory / "pki" / "banks" / code / "key.pem",
        gateway_signing_cert=signing_pair_for(cfg, code)[0],
        dialect=cfg.banks[code].dialect,
    )


def demo_rules(return_after_s: float = 2.0) -> RuleSet:
    """The demo banks' rules: most vouchers are paid at once; a few payees are refused, some payments are slow,
    and a few come back after payment, so that the summary shows every outcome.

    The probabilities draw from each bank's seeded generator, so a seed gives the same decisions every time.
    """
    return RuleSet(
        [
            Rule(
                Match(probability=0.04),
                (Refuse("收款账户已冻结"),),
                "frozen payee account",
            ),
            Rule(
                Match(payee_acct="6*", probability=0.04),
                (Refuse("收款人户名与账号不符"),),
                "name and account do not match (personal accounts)",
            ),
            Rule(
                Match(vt_code="5201", probability=0.05),
                (ReturnAfter(return_after_s, reason="收款人账户已销户"),),
                "the payee bank sends the money back",
            ),
            Rule(
                Match(amount_min_fen=10_000_000),
                (Delay(1.5),),
                "payments of 100,000 yuan and more wait for a second signature",
            ),
            Rule(
                Match(probability=0.10),
                (Delay(0.4),),
                "a busy moment at the bank",
            ),
            Rule(Match(), (Pay(),), "pay"),
        ]
    )


class TrackedClock:
    """The reactor's clock as one simulated bank sees it, counting the bank's timed calls still to come.

    A bank schedules delayed receipts and returns with `callLater`; the demo is settled only when none is left.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._calls: set[IDelayedCall] = set()

    def seconds(self) -> float:
        return float(self._reactor.seconds())

    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall:
        call: IDelayedCall = self._reactor.callLater(delay, fn, *args, **kw)
        self._calls.add(call)
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return [c for c in self._calls if c.active()]

    @property
    def pending(self) -> int:
        """Timed calls scheduled and not yet run."""
        self._calls = {c for c in self._calls if c.active()}
        return len(self._calls)


# --- following the vouchers -----------------------------------------------------------------------------------


@dataclass
class Tracker:
    """Every voucher submitted in this run: bank, last state, and when it was submitted and became final.

    Fed by the hub's `voucher` events. The store may report changes of one voucher out of order when it runs
    several threads (PostgreSQL), so a final state is never replaced by a non-final one.
    """

    clock: Callable[[], float] = time.perf_counter
    bank_of: dict[str, str] = field(default_factory=dict)
    state_of: dict[str, str] = field(default_factory=dict)
    submitted_at: dict[str, float] = field(default_factory=dict)
    final_at: dict[str, float] = field(default_factory=dict)
    counts: dict[str, collections.Counter[str]] = field(default_factory=dict)
    final: int = 0
    refused_batches: int = 0
    listeners: list[Callable[[str, str], None]] = field(default_factory=list)

    def submitted(self, key: str, bank: str, at: float) -> None:
        self.bank_of[key] = bank
        self.submitted_at[key] = at
        self._set(key, "ACCEPTED")

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """A hub event; only `voucher` events of vouchers of this run count."""
        if kind != "voucher":
            return
        key = data.get("key")
        state = data.get("state")
        if not isinstance(key, str) or not isinstance(state, str) or key not in self.bank_of:
            return
        old = self.state_of.get(key)
        if old in FINAL_STATES and state not in FINAL_STATES:
            return  # a late report of an earlier step (see the class docstring)
        self._set(key, state)

    def _set(self, key: str, state: str) -> None:
        old = self.state_of.get(key)
        if old == state:
            return
        bank = self.bank_of[key]
        counter = self.counts.setdefault(bank, collections.Counter())
        if old is not None:
            counter[old] -= 1
        counter[state] += 1
        self.state_of[key] = state
        if state in FINAL_STATES and key not in self.final_at:
            self.final_at[key] = self.clock()
            self.final += 1
        for listener in list(self.listeners):
            listener(key, state)

    @property
    def total(self) -> int:
        return len(self.bank_of)

    @property
    def outstanding(self) -> int:
        """Submitted and not final yet."""
        return self.total - self.final

    def latencies_s(self, keys: Iterable[str] | None = None) -> list[float]:
        """Submit → PAID latencies (of all vouchers, or of `keys`) that were paid; a return later does not count."""
        chosen = self.submitted_at if keys is None else keys
        return [
            self.final_at[k] - self.submitted_at[k]
            for k in chosen
            if k in self.final_at and self.state_of.get(k) in ("PAID", "RETURNED")
        ]


# --- the simulation -------------------------------------------------------------------------------------------


class Simulation:
    """A gateway on an instance, its banks, and the feeder, in one reactor.

    Args:
        cfg: the instance (from :func:`create_instance`).
        reactor: the reactor everything runs in.
        seed: the seed of the feeder and of the in-process banks.
        rules: the in-process banks' rules (default: pay everything).
        in_process_banks: start a simulated bank per configured bank here; if False the banks are expected to
            connect from elsewhere (`tgw simulate bank`), and :meth:`start` waits for them to sign on.
        web: also serve the HTTP API (on a port chosen by the OS).
        with_cards: also run the official-card cycle (`gateway.cards.demo`).
        discrepancies: the in-process banks spoil their statements with discrepancies of every class
            (:data:`DISCREPANCIES`), seeded, and record what they injected (:meth:`injected`).
    """

    def __init__(
        self,
        cfg: Config,
        reactor: Any,
        *,
        seed: int,
        rules: RuleSet | None = None,
        in_process_banks: bool = True,
        web: bool = False,
        with_cards: bool = False,
        discrepancies: bool = False,
    ) -> None:
        self.cfg = cfg
        self.discrepancies = discrepancies
        #: The gateway's work date when the run started (the first date :meth:`reconcile` reconciles).
        self.first_work_date: date | None = None
        #: Per bank, the reconciliation of the run's dates (:meth:`reconcile`), once done.
        self.reconciliation: dict[str, dict[str, Any]] | None = None
        #: What the run is doing after feeding, for the progress display ("" while it feeds).
        self.phase = ""
        self.with_cards = with_cards
        self.cards: Any = None  # the official-card cycle (gateway.cards.demo.CardCycle) when with_cards
        self.reactor = reactor
        self.seed = seed
        self.rules = rules or RuleSet()
        self.in_process_banks = in_process_banks
        self.web = web
        self.running: Any = None
        self.banks: list[SimulatedBank] = []
        self.clocks: dict[str, TrackedClock] = {}
        self.tracker = Tracker()
        self.feeder: Feeder | None = None
        self.quota_notices = 0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._vouchers_digest = hashlib.sha256()
        self.amount_fen_submitted = 0
        self._submitting = False
        self._stopped = False
        self._feeding: task.LoopingCall | None = None

    @property
    def bank_codes(self) -> list[str]:
        return list(self.cfg.banks)

    def work_date(self) -> date:
        assert self.running is not None
        d: date = self.running.hub.work_date()
        return d

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Start the gateway (and the in-process banks), wait until every bank has signed on, grant quota."""
        self.start_gateway()
        yield self.wait_signed_on()
        yield self.grant_quota()
        if self.with_cards and self.banks:
            from gateway.cards.demo import start_card_cycle

            self.cards = start_card_cycle(self.running.hub, self.banks, Random(self.seed + 7101))

    def start_gateway(self) -> None:
        """The gateway on the instance (it writes `run.json`), and the in-process banks if there are any."""
        from gateway import app

        self.running = app.start(self.cfg, self.reactor, web=self.web)
        self.running.hub.listeners.append(self.tracker.event)
        address = self.running.bank_address
        if not self.in_process_banks:
            return
        for n, code in enumerate(self.bank_codes):
            bank = SimulatedBank(
                bank_setup(self.cfg, code, address),
                self.reactor,
                rules=self.rules,
                seed=self.seed + n,
                statement_page_size=STATEMENT_PAGE_SIZE,
                spoiler=demo_spoiler(self.seed + n) if self.discrepancies else None,
            )
            clock = TrackedClock(self.reactor)
            bank.clock = clock  # type: ignore[assignment]  # an IReactorTime in all but name
            self.clocks[code] = clock
            bank.start()
            self.banks.append(bank)

    @defer.inlineCallbacks
    def grant_quota(self) -> Any:
        """One 5106 per bank, before any voucher (so that the feeder can issue authorized payments, 8202)."""
        today = self.work_date()
        if self.first_work_date is None:
            self.first_work_date = today
        self.feeder = Feeder(Random(self.seed), st_year=today.year, banks=self.bank_codes)
        hub = self.running.hub
        for code in self.bank_codes:
            if not registry.get(self.cfg.banks[code].dialect).supports(QuotaNotice):
                continue  # no quota at that bank: the feeder sends it direct payments (5201) only
            notice = self.feeder.quota_notice(code, today)
            yield hub.run_in_store(service.submit_quota_notice, code, notice, ACTOR, hub.now(), self.cfg.node)
            self.quota_notices += 1
            hub.kick(code)

    @defer.inlineCallbacks
    def wait_signed_on(self, timeout_s: float = SIGN_ON_TIMEOUT_S) -> Any:
        """Fires when every configured bank has a signed-on session."""
        hub = self.running.hub
        deadline = self.reactor.seconds() + timeout_s
        while not all(hub.live_sessions(code) for code in self.bank_codes):
            if self.reactor.seconds() > deadline:
                missing = [c for c in self.bank_codes if not hub.live_sessions(c)]
                raise DemoError(f"no sign-on within {timeout_s:g} s from {', '.join(missing)}")
            yield task.deferLater(self.reactor, 0.02, lambda: None)

    # --- feeding --------------------------------------------------------------------------------------------

    def next_vouchers(self, count: int) -> list[tuple[str, Voucher]]:
        """The feeder's next `count` vouchers for the gateway's work date."""
        assert self.feeder is not None
        today = self.work_date()
        return [self.feeder.next_voucher(today) for _ in range(count)]

    def submit(self, items: Sequence[tuple[str, Voucher]]) -> defer.Deferred[Any]:
        """Submit vouchers in one transaction (as the finance side's batch), then wake the banks' dispatchers."""
        hub = self.running.hub
        at = self.tracker.clock()
        if self.started_at is None:
            self.started_at = at
        for bank, voucher in items:
            self._vouchers_digest.update(f"{bank} {voucher.key} {voucher.pay_amt_fen}\n".encode())
            self.amount_fen_submitted += voucher.pay_amt_fen
        d: defer.Deferred[Any] = hub.run_in_store(
            service.submit, list(items), ACTOR, hub.now(), self.cfg.node, self.bank_codes
        )

        def accepted(done: list[service.Submitted]) -> None:
            for item in done:
                self.tracker.submitted(str(item.key), item.bank, at)
            for bank in {item.bank for item in done}:
                hub.kick(bank)

        def refused(failure: Any) -> None:
            failure.trap(ValidationError)
            self.tracker.refused_batches += 1
            log.error("the gateway refused a batch of %d vouchers: %s", len(items), failure.value)

        d.addCallbacks(accepted, refused)
        return d

    def feed(
        self,
        total: int | None,
        *,
        rate_per_s: float | None = None,
        window: int = DEFAULT_WINDOW,
        batch_max: int = DEFAULT_BATCH_MAX,
        vouchers: Sequence[tuple[str, Voucher]] | None = None,
    ) -> defer.Deferred[None]:
        """Submit `total` vouchers (None: until :meth:`stop_feeding`) and fire when the last is submitted.

        With `rate_per_s` the vouchers go out at that rate (open loop: what a finance system does); without it,
        as fast as the gateway takes them (closed loop: never more than `window` submitted and not final).
        Either way, at most `window` vouchers are outstanding and one batch is in the store at a time.
        `vouchers`, if given, are submitted instead of new ones from the feeder (a benchmark generates them
        before it starts the clock).
        """
        done: defer.Deferred[None] = defer.Deferred()
        start = self.tracker.clock()
        sent = 0
        source = iter(vouchers) if vouchers is not None else None

        def tick() -> None:
            nonlocal sent
            if self._submitting or self._stopped:
                return
            if total is not None and sent >= total:
                self.stop_feeding()
                done.callback(None)
                return
            room = window - self.tracker.outstanding
            remaining = (total - sent) if total is not None else batch_max
            if rate_per_s is None:  # closed loop: a whole batch once it fits in the window
                n = min(batch_max, remaining, window)
                if room < n:
                    return
            else:
                n = min(room, int(rate_per_s * (self.tracker.clock() - start)) - sent, batch_max, remaining)
            if n <= 0:
                return
            items = [next(source) for _ in range(n)] if source is not None else self.next_vouchers(n)
            sent += n
            self._submitting = True
            d = self.submit(items)

            def submitted(_: Any) -> None:
                self._submitting = False
                if rate_per_s is None:
                    tick()

            d.addBoth(submitted)

        def on_final(key: str, state: str) -> None:
            if rate_per_s is None and state in FINAL_STATES and not self._submitting:
                tick()

        feeding = self._feeding = task.LoopingCall(tick)
        feeding.clock = self.reactor
        feeding.start(FEED_INTERVAL_S if rate_per_s is not None else 0.05, now=True).addErrback(
            lambda f: done.errback(f) if not done.called else None
        )
        self.tracker.listeners.append(on_final)

        def unhook(result: Any) -> Any:
            self.tracker.listeners.remove(on_final)
            return result

        done.addBoth(unhook)
        return done

    def stop_feeding(self) -> None:
        if self._feeding is not None and self._feeding.running:
            self._feeding.stop()

    def settled(self) -> bool:
        """Every voucher submitted is final, and no in-process bank has anything left to send or to do."""
        if self.tracker.outstanding or self._submitting:
            return False
        return all(not bank.unacked and self.clocks[bank.setup.code].pending == 0 for bank in self.banks)

    @defer.inlineCallbacks
    def wait_settled(self, poll_s: float = 0.02, timeout_s: float | None = None) -> Any:
        """Fires once :meth:`settled` holds; the run's end is then the moment its last voucher became final.

        With `timeout_s`, fires at the latest after that long, with False if the run has not settled (the run's
        end is then left as it was); True otherwise.
        """
        deadline = None if timeout_s is None else self.reactor.seconds() + timeout_s
        while not self.settled():
            if deadline is not None and self.reactor.seconds() > deadline:
                return False
            yield task.deferLater(self.reactor, poll_s, lambda: None)
        final_at = self.tracker.final_at.values()
        self.stopped_at = max(final_at) if final_at else self.tracker.clock()
        return True

    @defer.inlineCallbacks
    def settle_cards(self, timeout_s: float = 60.0, poll_s: float = 0.05) -> Any:
        """Stop the card cycle, let a review round in progress finish (it may still submit repayments), then
        wait until every voucher in the store is final (at most `timeout_s` in all)."""
        if self.cards is None:
            return
        self.cards.stop()
        deadline = self.reactor.seconds() + timeout_s
        while getattr(self.cards, "_busy", False) and self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, poll_s, lambda: None)
        yield self.wait_store_final(timeout_s=max(deadline - self.reactor.seconds(), 0.0), poll_s=poll_s)

    # --- results and stopping ---------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def wait_store_final(self, timeout_s: float = 60.0, poll_s: float = 0.05) -> Any:
        """Fires when every voucher in the store (card repayments included) is in a final state."""
        deadline = self.reactor.seconds() + timeout_s
        while True:
            open_count = yield self.running.hub.run_in_store(_open_vouchers)
            if not open_count or self.reactor.seconds() > deadline:
                return
            yield task.deferLater(self.reactor, poll_s, lambda: None)

    def store_totals(self) -> defer.Deferred[dict[str, Any]]:
        """From the store: per bank and state the count, amount, amount paid and returned; and a digest of every
        voucher's outcome (key, state, paid, returned) in submission order."""
        return self.running.hub.run_in_store(_store_totals)

    # --- reconciliation -----------------------------------------------------------------------------------------

    def check_dates(self) -> list[date]:
        """The work dates of this run, first to last: usually one, two when it ran across midnight."""
        last = self.work_date()
        first = self.first_work_date or last
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def injected(self, bank: str, check_dates: Sequence[date]) -> dict[str, int]:
        """What bank `bank` injected into its statements of `check_dates`: per class (every class, 0 if none)."""
        counts = dict.fromkeys((cls.value for cls in BreakClass), 0)
        simulated = next((b for b in self.banks if b.setup.code == bank), None)
        if simulated is None or not self.discrepancies:
            return counts
        for check_date in check_dates:
            for cls, n in injected_counts(simulated, check_date).items():
                counts[cls] += n
        return counts

    def statement_notes(self, bank: str, check_dates: Sequence[date]) -> list[str]:
        """Why bank `bank` sent a statement of `check_dates` without the discrepancies asked for (too few lines)."""
        simulated = next((b for b in self.banks if b.setup.code == bank), None)
        return [] if simulated is None else statement_notes(simulated, check_dates)

    @defer.inlineCallbacks
    def reconcile(self, timeout_s: float = RECONCILE_TIMEOUT_S) -> Any:
        """Reconcile the run's dates with every bank over the link, the banks in parallel; fires with (and keeps
        in :attr:`reconciliation`) one entry per bank (:func:`reconciliation_entry`). Never fails: a bank whose
        run fails or takes longer than `timeout_s` has its `error` said in its entry."""
        dates = self.check_dates()
        self.phase = "reconciling " + ", ".join(f"{d:%Y-%m-%d}" for d in dates) + " with every bank …"
        done = yield defer.DeferredList(
            [self._reconcile_bank(code, dates, timeout_s) for code in self.bank_codes], consumeErrors=True
        )
        self.reconciliation = {}
        for code, (ok, value) in zip(self.bank_codes, done, strict=True):
            if not ok:  # a bug of ours rather than a failed run; still a summary, with the error in it
                log.error("reconciling %s: %s", code, value.getTraceback())
                value = reconciliation_entry(dates, [], self.injected(code, dates), value.getErrorMessage())
            self.reconciliation[code] = value
        self.phase = "the day is reconciled"
        return self.reconciliation

    @defer.inlineCallbacks
    def _reconcile_bank(self, bank: str, dates: Sequence[date], timeout_s: float) -> Any:
        """One bank's dates in order (a date's open breaks carry over into the next); stops at the first error."""
        runs: list[dict[str, Any]] = []
        error: str | None = None
        reconciler = reconciler_of(self.running.hub)
        deadline = self.reactor.seconds() + timeout_s
        for check_date in dates:
            left = deadline - self.reactor.seconds()
            try:
                call: defer.Deferred[Any] = reconciler.reconcile(bank, check_date, RECONCILE_ACTOR)
                call.addTimeout(max(left, 0.0), self.reactor)
                run = yield call
            except defer.TimeoutError:
                error = f"{check_date:%Y-%m-%d}: no result within {timeout_s:g} s"
                break
            except Exception as exc:  # the run failed: say why, go on with the other banks
                error = f"{check_date:%Y-%m-%d}: {exc or type(exc).__name__}"
                log.debug("reconciling %s %s failed", bank, check_date, exc_info=True)
                break
            runs.append(run_entry(check_date, run))
        return reconciliation_entry(dates, runs, self.injected(bank, dates), error, self.statement_notes(bank, dates))

    def vouchers_sha256(self) -> str:
        """Digest of the vouchers generated and submitted in this run (bank, key, amount), in order."""
        return self._vouchers_digest.hexdigest()

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop feeding, the banks and the gateway (its listeners, sessions and store threads)."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_feeding()
        if self.cards is not None:
            self.cards.stop()
        for bank in self.banks:
            bank.stop()
        if self.running is not None:
            yield self.running.stop()


def _open_vouchers(conn: Connection) -> int:
    count: int = conn.execute(
        select(func.count()).select_from(vouchers).where(vouchers.c.state.not_in(tuple(FINAL_STATES)))
    ).scalar_one()
    return count


def _store_totals(conn: Connection) -> dict[str, Any]:
    c = vouchers.c
    by_bank: dict[str, dict[str, dict[str, int]]] = {}
    query = select(
        c.bank_code,
        c.state,
        func.count(),
        func.coalesce(func.sum(c.amount_fen), 0),
        func.coalesce(func.sum(c.x_pay_amt_fen), 0),
        func.coalesce(func.sum(c.returned_fen), 0),
    ).group_by(c.bank_code, c.state)
    for bank, state, n, amount, paid, returned in conn.execute(query):
        by_bank.setdefault(bank, {})[state] = {
            "count": int(n),
            "amount_fen": int(amount),
            "paid_fen": int(paid) if state in ("PAID", "RETURNED") else 0,
            "returned_fen": int(returned),
        }
    digest = hashlib.sha256()
    for row in conn.execute(
        select(c.bank_code, c.vt_code, c.voucher_no, c.state, c.x_pay_amt_fen, c.returned_fen).order_by(c.id)
    ):
        digest.update(" ".join(str(v) for v in row).encode() + b"\n")
    return {"banks": by_bank, "outcomes_sha256": digest.hexdigest()}


# --- reconciliation in the summary -----------------------------------------------------------------------------


def _class_counts(counts: Any) -> dict[str, int]:
    """Counts by break class name, every class present (zero when none), in class order."""
    out = dict.fromkeys((cls.value for cls in BreakClass), 0)
    for cls, n in dict(counts or {}).items():
        name = cls.value if isinstance(cls, BreakClass) else BreakClass(str(cls)).value
        out[name] += int(n)
    return out


def demo_spoiler(seed: int) -> StatementSpoiler:
    """How a demo bank spoils its statements with `--discrepancies` (a :data:`~simulators.bank.StatementSpoiler`).

    :data:`DISCREPANCIES` go into a statement of :data:`LARGE_STATEMENT_LINES` lines or more, else
    :data:`DISCREPANCIES_SMALL`, with `reconciliation.inject` and `random.Random("<seed>:<check date>")` (as
    `gateway.reconcile.discrepancies.spoiler` does: the same statement every time a date is asked for). Like a
    faithful bank, the lines whose pay date a statement moved to the next day (`Injected.next_day`, cut-off
    timing) are listed again on the next day's statement, which clears those timing breaks. Too short a statement
    (fewer than six lines) raises ValueError: the bank sends it true and records why (:func:`statement_notes`).
    """
    moved: dict[date, list[StatementDetail]] = {}  # lines a statement moved to the day after, by that day

    def spoil(lines: list[StatementDetail], check_date: date) -> SpoiltStatement:
        counts = DISCREPANCIES if len(lines) >= LARGE_STATEMENT_LINES else DISCREPANCIES_SMALL
        spoilt, injected = inject(lines, Random(f"{seed}:{check_date.isoformat()}"), counts, check_date=check_date)
        moved[check_date + timedelta(days=1)] = list(injected.next_day)
        spoilt += moved.get(check_date, [])
        declared = injected.declared(spoilt)
        return SpoiltStatement(spoilt, (declared.count, declared.amount_fen), injected.as_json())

    return spoil


def injected_counts(bank: SimulatedBank, check_date: date) -> dict[str, int]:
    """What a simulated bank injected into the statement of `check_date` it sent last, per class name (empty if
    it sent none or a true one)."""
    sent = bank.statements.get(check_date)
    return {} if sent is None else _class_counts(sent.injected)


def statement_notes(bank: SimulatedBank, check_dates: Sequence[date]) -> list[str]:
    """Why a simulated bank sent a statement true although asked to spoil it (too few lines), per date."""
    return [f"{d:%Y-%m-%d}: {sent.error}" for d in check_dates if (sent := bank.statements.get(d)) and sent.error]


def run_entry(check_date: date, run: dict[str, Any]) -> dict[str, Any]:
    """One stored run of the link reconciler, as the demo's summary lists it."""
    return {
        "check_date": check_date.isoformat(),
        "run_id": run.get("run_id"),
        "ledger": run.get("ledger"),
        "statement": run.get("statement"),
        "matched": run.get("matched"),
        "breaks": _class_counts(run.get("breaks")),
        "open_breaks": run.get("open_breaks"),
        "closed_breaks": run.get("closed_breaks"),
        "reconciled_vouchers": run.get("reconciled_vouchers"),
        "result_msg_id": run.get("result_msg_id"),
        "request": run.get("request"),
    }


def reconciliation_entry(
    dates: Sequence[date],
    runs: Sequence[dict[str, Any]],
    injected: dict[str, int],
    error: str | None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """A bank's part of the summary's `reconciliation`: what was injected and what was found, per class, over the
    run's dates (every class present); totals of both sides; each run; `agrees`: every date reconciled and the
    breaks found are exactly the discrepancies injected, class by class; `error`: why a date could not be
    reconciled; `notes`: why a statement was sent without the discrepancies asked for."""
    breaks = _class_counts(None)
    ledger = {"count": 0, "amount_fen": 0}
    statement = {"count": 0, "amount_fen": 0}
    matched = 0
    for run in runs:
        for cls, n in run["breaks"].items():
            breaks[cls] += n
        for totals, side in ((ledger, run["ledger"]), (statement, run["statement"])):
            if isinstance(side, dict):
                totals["count"] += int(side.get("count", 0))
                totals["amount_fen"] += int(side.get("amount_fen", 0))
        matched += int(run["matched"] or 0)
    complete = error is None and len(runs) == len(dates)
    return {
        "check_dates": [d.isoformat() for d in dates],
        "injected": injected,
        "breaks": breaks,
        "agrees": complete and injected == breaks,
        "ledger": ledger,
        "statement": statement,
        "matched": matched,
        "runs": list(runs),
        "error": error,
        "notes": list(notes),
    }


# --- the demo -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `tgw demo` was asked for."""

    directory: Path
    seed: int
    banks: tuple[tuple[str, str], ...]
    vouchers: int | None = None
    rate_per_s: float | None = DEFAULT_RATE_PER_S
    keep: bool = False
    key_type: str = "rsa"
    notes: tuple[str, ...] = ()
    discrepancies: bool = False


def summary(sim: Simulation, totals: dict[str, Any], options: DemoOptions, *, interrupted: bool) -> dict[str, Any]:
    """The demo's result: the one dictionary `tgw demo --json` prints (later issues add keys to it here).

    Counts come from the store (the truth), the ledgers from the simulated banks; elapsed time runs from the
    first submission to the moment the run settled or was interrupted; throughput is final vouchers per second.
    `reconciliation` is the day's reconciliation per bank (:func:`reconciliation_entry`; empty when the run did
    not get that far).
    """
    states: collections.Counter[str] = collections.Counter()
    banks: dict[str, Any] = {}
    for code in sim.bank_codes:
        rows = totals["banks"].get(code, {})
        by_state = {s: rows[s]["count"] for s in STATES if s in rows}
        states.update(by_state)
        entry: dict[str, Any] = {
            "dialect": sim.cfg.banks[code].dialect,
            "states": by_state,
            "vouchers": sum(by_state.values()),
            "final": sum(n for s, n in by_state.items() if s in FINAL_STATES),
            "paid_fen": sum(r["paid_fen"] for r in rows.values()),
            "returned_fen": sum(r["returned_fen"] for r in rows.values()),
        }
        bank = next((b for b in sim.banks if b.setup.code == code), None)
        if bank is not None:
            outcomes = bank.ledger.outcomes()
            entry["ledger"] = {
                "executed": len(outcomes),
                "paid": sum(1 for o in outcomes if o.paid),
                "refused": sum(1 for o in outcomes if not o.paid),
                "paid_fen": sum(o.paid_fen for o in outcomes),
                "returns": len(bank.ledger.returns()),
                "returned_fen": -sum(r.pay_amt_fen for r in bank.ledger.returns()),
            }
            entry["agrees_with_ledger"] = (
                entry["ledger"]["paid_fen"] == entry["paid_fen"]
                and entry["ledger"]["returned_fen"] == entry["returned_fen"]
            )
            entry["connections"] = bank.stats.connections
        banks[code] = entry
    start = sim.started_at
    end = sim.stopped_at if sim.stopped_at is not None else sim.tracker.clock()
    elapsed_s = (end - start) if start is not None else 0.0
    final = sum(n for s, n in states.items() if s in FINAL_STATES)
    return {
        "seed": options.seed,
        "key_type": options.key_type,
        "notes": list(options.notes),
        "vouchers_submitted": sum(states.values()),
        "vouchers_final": final,
        "quota_notices": sim.quota_notices,
        "amount_fen_submitted": sim.amount_fen_submitted,
        "states": {s: states[s] for s in STATES if states[s]},
        "banks": banks,
        "elapsed_s": round(elapsed_s, 3),
        "throughput_per_s": round(final / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        "rate_per_s": options.rate_per_s,
        "interrupted": interrupted,
        "ledgers_agree": all(b.get("agrees_with_ledger", True) for b in banks.values()),
        "vouchers_sha256": sim.vouchers_sha256(),
        "outcomes_sha256": totals["outcomes_sha256"],
        "directory": str(options.directory) if options.keep else None,
        "discrepancies": options.discrepancies,
        "reconciliation": sim.reconciliation or {},
    }


def run_demo(
    options: DemoOptions,
    reactor: Any,
    *,
    on_start: Callable[[Simulation], None] | None = None,
) -> dict[str, Any]:
    """Run the demo to its end in `reactor` (which must not be running yet) and return its summary.

    The run ends when `options.vouchers` vouchers are final and the banks have nothing left to send, or when
    the reactor is asked to stop (Ctrl-C: Twisted stops the reactor on SIGINT and SIGTERM; the vouchers in
    flight then get :data:`SETTLE_ON_INTERRUPT_S` to become final). Either way the day is then reconciled with
    every bank over the link (:meth:`Simulation.reconcile`), and the summary is taken from the store before the
    banks, the gateway and its store threads are stopped. A run that failed is not reconciled.

    Raises:
        DemoError: the instance could not be created, or the run failed (the message says why).
    """
    cfg = create_instance(options.directory, options.banks, key_type=options.key_type)
    sim = Simulation(
        cfg,
        reactor,
        seed=options.seed,
        rules=demo_rules(),
        web=True,
        with_cards=True,
        discrepancies=options.discrepancies,
    )
    result: dict[str, Any] = {}
    errors: list[str] = []
    finishing: list[defer.Deferred[Any]] = []
    ready: list[bool] = []  # the banks signed on: there is a day to reconcile

    @defer.inlineCallbacks
    def wrap_up(interrupted: bool, reconcile: bool) -> Any:
        if sim.stopped_at is None:
            sim.stopped_at = sim.tracker.clock()
        sim.stop_feeding()
        if reconcile:
            if interrupted:  # Ctrl-C: what was submitted gets a moment to become final, then the day is reconciled
                sim.phase = "stopped feeding; the vouchers in flight settle …"
                if sim.cards is not None:
                    sim.cards.stop()
                yield sim.wait_settled(timeout_s=SETTLE_ON_INTERRUPT_S)
                yield sim.settle_cards(timeout_s=SETTLE_ON_INTERRUPT_S)
            yield sim.reconcile()
        totals = yield (
            sim.store_totals() if sim.running is not None else defer.succeed({"banks": {}, "outcomes_sha256": ""})
        )
        result.update(summary(sim, totals, options, interrupted=interrupted))
        if sim.cards is not None:
            sim.cards.stop()
            result["cards"] = yield sim.cards.summary()

    def finish(interrupted: bool, *, reconcile: bool = True) -> defer.Deferred[Any]:
        if finishing:
            return finishing[0]
        d: defer.Deferred[Any] = wrap_up(interrupted, reconcile and bool(ready))
        d.addErrback(lambda f: errors.append(f"summary failed: {f.getErrorMessage()}"))
        d.addBoth(lambda _: sim.stop())
        d.addErrback(lambda f: log.warning("stopping: %s", f.getErrorMessage()))
        finishing.append(d)
        return d

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            yield sim.start()
            ready.append(True)
            if on_start is not None:
                on_start(sim)
            yield sim.feed(options.vouchers, rate_per_s=options.rate_per_s)
            if options.vouchers is None:
                return  # fed until interrupted: the shutdown trigger finishes
            yield sim.wait_settled()
            yield sim.settle_cards()  # no new repayments; those already submitted become final too
            yield finish(interrupted=False)
        except Exception as exc:
            if not finishing:
                errors.append(str(exc) if isinstance(exc, DemoError) else f"{type(exc).__name__}: {exc}")
                log.debug("demo failed", exc_info=True)
                yield finish(interrupted=True, reconcile=False)
        if reactor.running:
            reactor.stop()

    reactor.addSystemEventTrigger("before", "shutdown", finish, True)
    reactor.callWhenRunning(main)
    try:
        reactor.run()
    finally:  # a KeyboardInterrupt out of the reactor skips `finish`: the store threads must not keep us alive
        if sim.running is not None and not finishing:
            sim.running.db.stop()
    if errors:
        raise DemoError("; ".join(errors))
    return result
