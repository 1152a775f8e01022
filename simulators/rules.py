"""The simulated banks' rule engine (match → action) and the transport fault plan; pure decision logic.

After moov-io's ach-test-harness: a simulated bank pays every voucher unless a rule says otherwise. A
:class:`Rule` pairs a :class:`Match` (what vouchers it is about) with one or more actions (what the bank does
instead); the **first matching rule wins**. :meth:`RuleSet.decide` returns a :class:`Decision`: flat,
explicit instructions for the network layer, which carries them out in this order:

1. `record`: call :meth:`simulators.ledger.Ledger.receive` (the bank knows the voucher: status 1).
2. `ack`: send the 9120 for the voucher.
3. `disconnect`: drop the connection (anything still to send goes on the next connection).
4. after `receipt_delay_s`: if `execute`, call `Ledger.pay(voucher, date, refuse_reason=…,
   failed_details=dict(…))`; then send `receipt_copies` receipts (each under a new `MsgId`; 0 = never answer).
5. if `return_plan` and something was paid: `return_plan.after_s` after paying, call
   `Ledger.return_payment(key, return_plan.amount_for(outcome.paid_fen), date, return_plan.reason)` and send
   the 2252.

Randomness is injected: `decide` draws from the `random.Random` it is given, and only for probabilities that
apply (a rule's `probability` once its other criteria match; `fail_details`' per-detail probability when it is
below 1), so the same seed and the same vouchers always give the same decisions.

Rules file (TOML, or JSON with the same structure; see `simulators/rules.example.toml`)::

    # Each [[rules]] entry: an optional name, a match table, and an action (one, or a list).
    [[rules]]
    name = "frozen payee"
    match = { payee_acct = "6222020000000000123" }        # globs: * ? [seq]; exact text is a glob too
    action = { kind = "refuse", reason = "收款账户已冻结" }

    [[rules]]
    name = "slow large direct payments"
    match = { vt_code = "5201", amount_min_fen = 100_000_000 }
    action = { kind = "delay", delay_s = 120 }

    [[rules]]
    name = "one in twenty answered twice, late"
    match = { voucher_no = "5201*", probability = 0.05 }
    action = ["answer_twice", { kind = "delay", delay_s = 5 }]

    [faults]                                               # optional: the transport's fault profile
    drop_prob = 0.01
    delay_ms_max = 200

Match fields (all optional; a rule with an empty match matches everything): `payee_acct`, `pay_acct`,
`agency_code`, `vt_code`, `business_type_code`, `voucher_no` (globs), `amount_min_fen`, `amount_max_fen`
(inclusive, integer fen), `attempt_max` (only the first N arrivals of the same voucher; see
:meth:`~simulators.ledger.Ledger.receive`), `probability` (0–1).

Actions (`kind`, then its parameters; a bare string for a kind without required parameters):

=================  ======================================  ==============================================
kind               parameters                              effect
=================  ======================================  ==============================================
`pay`              –                                       pay normally (what happens when nothing matches)
`refuse`           `reason`                                refuse the voucher (`XResult` F)
`delay`            `delay_s`                               execute and answer `delay_s` seconds later
`return_after`     `after_s`, `fraction` or `amount_fen`,  pay, then return part (`fraction` of what was
                   `reason`                                paid, e.g. 0.5 or "1/3") or `amount_fen`; whole
                                                           amount if neither
`never_answer`     `execute` (default true)                ack, never send a receipt; with execute=false
                                                           leave it unpaid (status 1)
`answer_twice`     –                                       send the receipt twice, different `MsgId`s
`fail_details`     `reason`, `card_no`, `spend_id`,        official-card repayment: fail the details whose
                   `detail_id` (globs, default `*`),       card, spend id and id match (each with the
                   `probability` (default 1)               probability); other vouchers are unaffected
`drop_ack`         –                                       lose the voucher: no ack, nothing recorded, no
                                                           receipt (status 0)
`disconnect`       `execute` (default false)               drop the connection on receipt, before the ack;
                                                           with execute=true the bank had recorded and paid
                                                           it, and the receipt goes on the next connection
=================  ======================================  ==============================================

Loading validates everything and names the rule and field of the first problem, e.g.
`bank.toml: rules[2] ("closed cards").action.reason: required, a non-empty text`.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from fractions import Fraction
from pathlib import Path
from random import Random
from typing import Any, ClassVar, Final, Generic, TypeVar

from protocols.messages import Voucher

#: The `XAddWord` / `Remark` limit of the standard (schema type `Text`).
MAX_REASON_CHARS: Final = 200
#: A return's reason when a rule gives none.
DEFAULT_RETURN_REASON: Final = "收款人账户已销户"
#: The longest delay a rule may ask for: a day.
MAX_DELAY_S: Final = 86_400.0


class RuleError(ValueError):
    """A rule, or a rules file, that cannot be used.

    Attributes:
        where: the rule and field at fault (`rules[2] ("closed cards").action.reason`).
        problem: what is wrong with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


# --- checks shared by the types and the loader ----------------------------------------------------------------


def _check_text(value: object, where: str, *, limit: int = MAX_REASON_CHARS) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError(where, f"a non-empty text, not {value!r}")
    if len(value) > limit:
        raise RuleError(where, f"at most {limit} characters, not {len(value)}")
    return value


def _check_probability(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RuleError(where, f"a probability between 0 and 1, not {value!r}")
    return float(value)


def _check_seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DELAY_S:
        raise RuleError(where, f"a number of seconds between 0 and {MAX_DELAY_S:g}, not {value!r}")
    return float(value)


def _check_fen(value: object, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(where, f"an integer number of fen, not {value!r}")
    if value < minimum:
        raise RuleError(where, f"at least {minimum} fen, not {value}")
    return value


def _check_count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(where, f"a whole number ≥ 1, not {value!r}")
    return value


def _check_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise RuleError(where, f"true or false, not {value!r}")
    return value


def _check_fraction(value: object, where: str) -> Fraction:
    """A fraction in (0, 1], exact: a float goes through its decimal text (0.1 is 1/10), a text may be "1/3"."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Fraction):
            raise ValueError
        result = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise RuleError(where, f'a fraction such as 0.5 or "1/3", not {value!r}') from None
    if not 0 < result <= 1:
        raise RuleError(where, f"a fraction above 0 and at most 1, not {value!r}")
    return result


# --- match ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """What vouchers a rule is about; every criterion given must hold, and an empty match matches all.

    Text criteria are globs (:func:`fnmatch.fnmatchcase`: `*`, `?`, `[seq]`), so an exact value is one too.

    Attributes:
        payee_acct: `PayeeAcctNo`.
        pay_acct: `PayAcctNo`.
        agency_code: `AgencyCode`.
        vt_code: `VtCode` (5201, 8202).
        business_type_code: `BusinessTypeCode` (1, 2 official-card repayment, 4).
        voucher_no: `VoucherNo`.
        amount_min_fen: the smallest `PayAmt` matched, inclusive.
        amount_max_fen: the largest `PayAmt` matched, inclusive.
        attempt_max: match only the first N arrivals of the same voucher (a resend is arrival 2, …).
        probability: once everything else matches, match with this probability (drawn from the rng).
    """

    payee_acct: str | None = None
    pay_acct: str | None = None
    agency_code: str | None = None
    vt_code: str | None = None
    business_type_code: str | None = None
    voucher_no: str | None = None
    amount_min_fen: int | None = None
    amount_max_fen: int | None = None
    attempt_max: int | None = None
    probability: float | None = None

    GLOBS: ClassVar[dict[str, str]] = {  # criterion -> Voucher attribute
        "payee_acct": "payee_acct_no",
        "pay_acct": "pay_acct_no",
        "agency_code": "agency_code",
        "vt_code": "vt_code",
        "business_type_code": "business_type_code",
        "voucher_no": "voucher_no",
    }

    def __post_init__(self) -> None:
        for name in self.GLOBS:
            value = getattr(self, name)
            if value is not None:
                _check_text(value, name, limit=100)
        if self.amount_min_fen is not None:
            _check_fen(self.amount_min_fen, "amount_min_fen")
        if self.amount_max_fen is not None:
            _check_fen(self.amount_max_fen, "amount_max_fen")
            if self.amount_min_fen is not None and self.amount_min_fen > self.amount_max_fen:
                raise RuleError("amount_max_fen", f"below amount_min_fen ({self.amount_min_fen})")
        if self.attempt_max is not None:
            _check_count(self.attempt_max, "attempt_max")
        if self.probability is not None:
            _check_probability(self.probability, "probability")

    def matches(self, voucher: Voucher, rng: Random, attempt: int = 1) -> bool:
        """Whether the voucher matches; draws from `rng` only if everything but the probability matched."""
        for name, attr in self.GLOBS.items():
            pattern = getattr(self, name)
            if pattern is not None and not fnmatchcase(getattr(voucher, attr), pattern):
                return False
        if self.amount_min_fen is not None and voucher.pay_amt_fen < self.amount_min_fen:
            return False
        if self.amount_max_fen is not None and voucher.pay_amt_fen > self.amount_max_fen:
            return False
        if self.attempt_max is not None and attempt > self.attempt_max:
            return False
        return self.probability is None or rng.random() < self.probability


# --- actions --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pay:
    """Pay normally."""

    KIND: ClassVar[str] = "pay"


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse the voucher with a reason (`XResult` F, `XAddWord` the reason)."""

    KIND: ClassVar[str] = "refuse"
    reason: str

    def __post_init__(self) -> None:
        _check_text(self.reason, "reason")


@dataclass(frozen=True, slots=True)
class Delay:
    """Execute and answer `delay_s` seconds after the voucher arrived (status 1 meanwhile)."""

    KIND: ClassVar[str] = "delay"
    delay_s: float

    def __post_init__(self) -> None:
        _check_seconds(self.delay_s, "delay_s")


@dataclass(frozen=True, slots=True)
class ReturnAfter:
    """Pay, then return part or all of it `after_s` seconds later (a 2252).

    Give `fraction` (of what was paid) or `amount_fen`, not both; neither returns the whole payment.
    """

    KIND: ClassVar[str] = "return_after"
    after_s: float
    fraction: Fraction | None = None
    amount_fen: int | None = None
    reason: str = DEFAULT_RETURN_REASON

    def __post_init__(self) -> None:
        _check_seconds(self.after_s, "after_s")
        if self.fraction is not None and self.amount_fen is not None:
            raise RuleError("fraction", "give fraction or amount_fen, not both")
        if self.fraction is not None:  # normalized to an exact Fraction (a float 0.1 becomes 1/10)
            object.__setattr__(self, "fraction", _check_fraction(self.fraction, "fraction"))
        if self.amount_fen is not None:
            _check_fen(self.amount_fen, "amount_fen", minimum=1)
        _check_text(self.reason, "reason")


@dataclass(frozen=True, slots=True)
class NeverAnswer:
    """Acknowledge the voucher, never send a receipt; `execute=False` also leaves it unpaid (status 1)."""

    KIND: ClassVar[str] = "never_answer"
    execute: bool = True

    def __post_init__(self) -> None:
        _check_bool(self.execute, "execute")


@dataclass(frozen=True, slots=True)
class AnswerTwice:
    """Send the receipt twice, under different `MsgId`s (the gateway must apply it once)."""

    KIND: ClassVar[str] = "answer_twice"


@dataclass(frozen=True, slots=True)
class FailDetails:
    """Official-card repayment: fail the details matching the globs, each with `probability`."""

    KIND: ClassVar[str] = "fail_details"
    reason: str
    card_no: str = "*"
    spend_id: str = "*"
    detail_id: str = "*"
    probability: float = 1.0

    def __post_init__(self) -> None:
        _check_text(self.reason, "reason")
        for name in ("card_no", "spend_id", "detail_id"):
            _check_text(getattr(self, name), name, limit=100)
        _check_probability(self.probability, "probability")

    def failures(self, voucher: Voucher, rng: Random) -> tuple[tuple[str, str], ...]:
        """(detail `Id`, reason) of the details to fail; none unless the voucher is a card repayment."""
        if voucher.business_type_code != "2":
            return ()
        failed = []
        for d in voucher.details:
            if (
                fnmatchcase(d.card_no or "", self.card_no)
                and fnmatchcase(d.spend_id or "", self.spend_id)
                and fnmatchcase(d.id, self.detail_id)
                and (self.probability >= 1 or rng.random() < self.probability)
            ):
                failed.append((d.id, self.reason))
        return tuple(failed)


@dataclass(frozen=True, slots=True)
class DropAck:
    """Lose the voucher: no acknowledgement, nothing recorded, no receipt (status 0; a resend is safe)."""

    KIND: ClassVar[str] = "drop_ack"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Drop the connection on receipt, before acknowledging.

    With `execute=False` (default) the voucher is lost with the connection; with `execute=True` the bank had
    recorded and executed it, and its receipt goes out on the next connection.
    """

    KIND: ClassVar[str] = "disconnect"
    execute: bool = False

    def __post_init__(self) -> None:
        _check_bool(self.execute, "execute")


Action = Pay | Refuse | Delay | ReturnAfter | NeverAnswer | AnswerTwice | FailDetails | DropAck | Disconnect
ACTION_TYPES: Final[dict[str, type[Action]]] = {
    t.KIND: t for t in (Pay, Refuse, Delay, ReturnAfter, NeverAnswer, AnswerTwice, FailDetails, DropAck, Disconnect)
}

#: Pairs of action kinds that cannot be combined in one rule.
_CONFLICTS: Final = frozenset(
    frozenset(pair)
    for pair in (
        ("pay", "refuse"),
        ("refuse", "return_after"),
        ("refuse", "fail_details"),
        ("never_answer", "answer_twice"),
        ("never_answer", "delay"),
    )
)


def _check_actions(actions: tuple[Action, ...]) -> None:
    """Refuse empty, repeated and contradictory combinations, naming the action at fault."""
    if not actions:
        raise RuleError("action", "at least one action")
    kinds: list[str] = []
    for n, action in enumerate(actions):
        where = "action" if len(actions) == 1 else f"action[{n}]"
        if not isinstance(action, tuple(ACTION_TYPES.values())):
            raise RuleError(where, f"not an action: {action!r}")
        if action.KIND in kinds:
            raise RuleError(where, f"{action.KIND} appears twice")
        alone = isinstance(action, DropAck) or (isinstance(action, Disconnect) and not action.execute)
        if alone and len(actions) > 1:
            raise RuleError(where, f"{action.KIND} loses the voucher: it cannot be combined with other actions")
        for other in kinds:
            if frozenset((action.KIND, other)) in _CONFLICTS:
                raise RuleError(where, f"{action.KIND} contradicts {other}")
        kinds.append(action.KIND)
    never = next((a for a in actions if isinstance(a, NeverAnswer)), None)
    if never is not None and not never.execute:
        late = [a.KIND for a in actions if a.KIND in ("refuse", "return_after", "fail_details")]
        if late:
            raise RuleError("action", f"never_answer with execute=false executes nothing, so {late[0]} cannot apply")


# --- rules and decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A match and what to do when it matches.

    Args:
        match: what vouchers the rule is about.
        action: one action, or several to combine (e.g. `(Delay(5), AnswerTwice())`).
        name: shown in errors and in the decision.

    Raises:
        RuleError: the actions are empty, repeated or contradict each other.
    """

    match: Match
    action: Action | tuple[Action, ...] = Pay()
    name: str = ""
    actions: tuple[Action, ...] = field(init=False)

    def __post_init__(self) -> None:
        actions = self.action if isinstance(self.action, tuple) else (self.action,)
        _check_actions(actions)
        object.__setattr__(self, "actions", actions)


@dataclass(frozen=True, slots=True)
class ReturnPlan:
    """A return to make after paying (from a `return_after` action)."""

    after_s: float
    reason: str
    fraction: Fraction | None = None
    amount_fen: int | None = None

    def amount_for(self, paid_fen: int) -> int:
        """The amount to return of a payment of `paid_fen`: never more than was paid, at least 1 fen if any.

        A fraction is rounded down to whole fen (integer arithmetic, no float).
        """
        if paid_fen <= 0:
            return 0
        if self.amount_fen is not None:
            return min(self.amount_fen, paid_fen)
        fraction = Fraction(1) if self.fraction is None else self.fraction
        return max(1, paid_fen * fraction.numerator // fraction.denominator)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the bank does with one voucher; the module docstring gives the order to carry it out in.

    Attributes:
        rule_index: the index of the rule that matched (from 0), None when none did.
        rule_name: its name ("" when unnamed or none matched).
        record: record the voucher as received (`Ledger.receive`).
        ack: send the 9120 acknowledging it.
        disconnect: drop the connection after receiving (and acknowledging, if `ack`).
        execute: execute it (`Ledger.pay`), after `receipt_delay_s`.
        refuse_reason: pass to `Ledger.pay` to refuse the whole voucher.
        failed_details: (detail `Id`, reason) pairs to pass to `Ledger.pay` as a mapping.
        receipt_delay_s: how long after arrival to execute and answer.
        receipt_copies: how many receipts to send (0 never, 2 answer twice), each under a new `MsgId`.
        return_plan: a return to make after paying, if any.
    """

    rule_index: int | None = None
    rule_name: str = ""
    record: bool = True
    ack: bool = True
    disconnect: bool = False
    execute: bool = True
    refuse_reason: str | None = None
    failed_details: tuple[tuple[str, str], ...] = ()
    receipt_delay_s: float = 0.0
    receipt_copies: int = 1
    return_plan: ReturnPlan | None = None


def _apply(decision: Decision, action: Action, voucher: Voucher, rng: Random) -> Decision:
    """The decision with one more action taken into account."""
    replace = dataclasses.replace
    if isinstance(action, Refuse):
        return replace(decision, refuse_reason=action.reason)
    if isinstance(action, Delay):
        return replace(decision, receipt_delay_s=action.delay_s)
    if isinstance(action, ReturnAfter):
        plan = ReturnPlan(action.after_s, action.reason, action.fraction, action.amount_fen)
        return replace(decision, return_plan=plan)
    if isinstance(action, NeverAnswer):
        return replace(decision, receipt_copies=0, execute=action.execute)
    if isinstance(action, AnswerTwice):
        return replace(decision, receipt_copies=2)
    if isinstance(action, FailDetails):
        return replace(decision, failed_details=action.failures(voucher, rng))
    if isinstance(action, DropAck):
        return replace(decision, record=False, ack=False, execute=False, receipt_copies=0)
    if isinstance(action, Disconnect):
        if action.execute:
            return replace(decision, ack=False, disconnect=True)
        return replace(decision, record=False, ack=False, disconnect=True, execute=False, receipt_copies=0)
    return decision  # Pay


class RuleSet:
    """An ordered list of rules (first match wins), and optionally the transport's fault profile.

    Args:
        rules: the rules, in order.
        faults: the fault profile from the rules file's `[faults]` table, if any.
    """

    def __init__(self, rules: Sequence[Rule] = (), faults: FaultProfile | None = None) -> None:
        self.rules = tuple(rules)
        self.faults = faults

    def decide(self, voucher: Voucher, rng: Random, *, attempt: int = 1) -> Decision:
        """What to do with a voucher arriving for the `attempt`-th time (1 the first time).

        Args:
            voucher: the voucher received.
            rng: the seeded source of randomness for probabilities.
            attempt: how many times this voucher key has arrived, this time included (`Ledger.receive`).
        """
        for index, rule in enumerate(self.rules):
            if rule.match.matches(voucher, rng, attempt):
                decision = Decision(rule_index=index, rule_name=rule.name)
                for action in rule.actions:
                    decision = _apply(decision, action, voucher, rng)
                return decision
        return Decision()

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        """Read a rules file: TOML (`.toml`) or JSON (`.json`); see the module docstring for the format.

        Raises:
            RuleError: the file cannot be read or parsed, or a rule is invalid (the rule and field are named).
        """
        path = Path(path)
        source = path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RuleError(source, f"cannot be read: {exc.strerror or exc}") from None
        try:
            if path.suffix == ".toml":
                parsed: object = tomllib.loads(data.decode("utf-8"))
            elif path.suffix == ".json":
                parsed = json.loads(data.decode("utf-8"))
            else:
                raise RuleError(source, "a rules file is .toml or .json")
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise RuleError(source, f"not valid {path.suffix[1:].upper()}: {exc}") from None
        return cls.parse(parsed, source)

    @classmethod
    def parse(cls, data: object, source: str = "rules") -> RuleSet:
        """Build a rule set from parsed TOML/JSON data: `{"rules": [...], "faults": {...}}`.

        Raises:
            RuleError: naming the rule (`rules[2] ("name")`) and the field at fault.
        """
        top = _table(data, source, ("rules", "faults"), sep=": ")
        items = top.get("rules", [])
        if not isinstance(items, list):
            raise RuleError(f"{source}: rules", "a list of rules ([[rules]] in TOML)")
        rules = [_parse_rule(item, f"{source}: rules[{n}]") for n, item in enumerate(items)]
        faults = None
        if "faults" in top:
            where = f"{source}: faults"
            fields = _table(top["faults"], where, tuple(f.name for f in dataclasses.fields(FaultProfile)))
            try:
                faults = FaultProfile(**fields)
            except RuleError as exc:
                raise RuleError(f"{where}.{exc.where}", exc.problem) from None
        return cls(rules, faults)


def _table(value: object, where: str, allowed: Sequence[str], *, sep: str = ".") -> dict[str, Any]:
    """A table with only `allowed` keys (a typo must not silently widen a match); `sep` joins a key to `where`."""
    if not isinstance(value, dict):
        raise RuleError(where, f"a table, not {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise RuleError(f"{where}{sep}{unknown[0]}", f"unknown field; expected one of {', '.join(allowed)}")
    return value


def _parse_rule(item: object, at: str) -> Rule:
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
        at = f'{at} ("{item["name"]}")'
    rule = _table(item, at, ("name", "match", "action"))
    name = rule.get("name", "")
    if not isinstance(name, str):
        raise RuleError(f"{at}.name", "a text")
    if "action" not in rule:
        raise RuleError(f"{at}.action", 'required: what to do (e.g. { kind = "refuse", reason = "…" })')
    match_fields = _table(rule.get("match", {}), f"{at}.match", tuple(f.name for f in dataclasses.fields(Match)))
    try:
        match = Match(**match_fields)
    except RuleError as exc:
        raise RuleError(f"{at}.match.{exc.where}", exc.problem) from None
    raw = rule["action"]
    many = isinstance(raw, list)
    raw_actions = raw if many else [raw]
    actions = tuple(
        _parse_action(a, f"{at}.action[{n}]" if many else f"{at}.action") for n, a in enumerate(raw_actions)
    )
    try:
        return Rule(match, actions, name)
    except RuleError as exc:
        raise RuleError(f"{at}.{exc.where}", exc.problem) from None


def _parse_action(raw: object, at: str) -> Action:
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise RuleError(at, f"an action: a kind name or a table with a kind, not {type(raw).__name__}")
    kind = raw.get("kind")
    action_type = ACTION_TYPES.get(kind) if isinstance(kind, str) else None
    if action_type is None:
        raise RuleError(f"{at}.kind", f"one of {', '.join(ACTION_TYPES)}, not {kind!r}")
    params = dict(_table(raw, at, ("kind", *(f.name for f in dataclasses.fields(action_type)))))
    del params["kind"]
    if action_type is ReturnAfter and "fraction" in params:
        params["fraction"] = _check_fraction(params["fraction"], f"{at}.fraction")
    try:
        return action_type(**params)
    except TypeError:  # a required parameter is missing
        missing = [
            f.name for f in dataclasses.fields(action_type) if f.default is dataclasses.MISSING and f.name not in params
        ]
        raise RuleError(f"{at}.{missing[0] if missing else 'kind'}", "required") from None
    except RuleError as exc:
        raise RuleError(f"{at}.{exc.where}", exc.problem) from None


# --- transport faults -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """How a simulated bank's transport misbehaves; all zero (the default) is a perfect link.

    Attributes:
        drop_prob: an outbound message is lost.
        duplicate_prob: it is sent twice (the same bytes: a transport-level duplicate, same `MsgId`).
        reorder_prob: it is held back and sent after the next message.
        delay_ms_max: each copy sent waits a uniform 0…`delay_ms_max` milliseconds.
        disconnect_prob: the connection drops right after this message (a held-back message is lost with it).
    """

    drop_prob: float = 0.0
    duplicate_prob: float = 0.0
    reorder_prob: float = 0.0
    delay_ms_max: int = 0
    disconnect_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("drop_prob", "duplicate_prob", "reorder_prob", "disconnect_prob"):
            _check_probability(getattr(self, name), name)
        if isinstance(self.delay_ms_max, bool) or not isinstance(self.delay_ms_max, int) or self.delay_ms_max < 0:
            raise RuleError("delay_ms_max", f"a whole number of milliseconds ≥ 0, not {self.delay_ms_max!r}")


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The faults drawn for one outbound message.

    Attributes:
        drop: lose it.
        duplicate: send it twice.
        reorder: hold it back until the next message has gone.
        disconnect: drop the connection after it.
        delays_ms: the delay of the first and of the second copy.
    """

    drop: bool = False
    duplicate: bool = False
    reorder: bool = False
    disconnect: bool = False
    delays_ms: tuple[int, int] = (0, 0)


def draw_faults(profile: FaultProfile, rng: Random) -> FaultDecision:
    """Draw the faults of one outbound message.

    Always draws exactly six numbers from `rng` (disconnect, drop, duplicate, reorder, two delays), whatever the
    profile says, so that changing one probability does not shift the draws of every later message.
    """
    disconnect = rng.random() < profile.disconnect_prob
    drop = rng.random() < profile.drop_prob
    duplicate = rng.random() < profile.duplicate_prob
    reorder = rng.random() < profile.reorder_prob
    delays = tuple(min(profile.delay_ms_max, int(rng.random() * (profile.delay_ms_max + 1))) for _ in range(2))
    return FaultDecision(drop, duplicate, reorder, disconnect, (delays[0], delays[1]))


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send(Generic[T]):
    """Send `item` after `delay_ms` milliseconds."""

    item: T
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop the connection now (after the sends before it)."""


class FaultPlan(Generic[T]):
    """Applies a fault profile to a stream of outbound messages: message in, what to do out (sans-I/O).

    Each outbound message goes through :meth:`outbound`, which returns the steps to carry out now, in order:
    :class:`Send` (possibly twice, possibly with an earlier held-back message after it) and :class:`Drop`.
    A dropped message yields no `Send`; a reordered one is held and released after the next message sent
    (or by :meth:`flush`). The plan holds at most one message.

    Args:
        profile: the faults and their probabilities.
        rng: the seeded source of randomness (six draws per message, see :func:`draw_faults`).
    """

    def __init__(self, profile: FaultProfile, rng: Random) -> None:
        self.profile = profile
        self.rng = rng
        self._held: Send[T] | None = None

    @property
    def holding(self) -> T | None:
        """The message held back for reordering, if any."""
        return None if self._held is None else self._held.item

    def outbound(self, item: T) -> list[Send[T] | Drop]:
        """The steps for one outbound message (see the class docstring)."""
        fault = draw_faults(self.profile, self.rng)
        steps: list[Send[T] | Drop] = []
        held_now = False
        if not fault.drop:
            first = Send(item, fault.delays_ms[0])
            if fault.reorder and self._held is None:
                self._held, held_now = first, True
            else:
                steps.append(first)
            if fault.duplicate:
                steps.append(Send(item, fault.delays_ms[1]))
        if steps and not held_now and self._held is not None:  # the earlier message goes after this one
            steps.append(self._held)
            self._held = None
        if fault.disconnect:
            self._held = None  # in flight when the connection dropped: lost (the sender resends unacked ones)
            steps.append(Drop())
        return steps

    def flush(self) -> list[Send[T]]:
        """Release the held-back message, if any (e.g. when the link goes idle)."""
        held, self._held = self._held, None
        return [] if held is None else [held]
