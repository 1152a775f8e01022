"""The rule engine (match → action), rules files, and the transport fault plan."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from fractions import Fraction
from pathlib import Path
from random import Random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import samples
from protocols.messages import Voucher, VoucherDetail
from simulators.ledger import Ledger
from simulators.rules import (
    AnswerTwice,
    Decision,
    Delay,
    Disconnect,
    Drop,
    DropAck,
    FailDetails,
    FaultPlan,
    FaultProfile,
    Match,
    NeverAnswer,
    Pay,
    Refuse,
    ReturnAfter,
    ReturnPlan,
    Rule,
    RuleError,
    RuleSet,
    Send,
    draw_faults,
)

EXAMPLE = Path(__file__).parents[2] / "simulators" / "rules.example.toml"
DIRECT = samples.direct_voucher()  # 5201, 125,000.00, payee 6222020000000000123, agency 101001
AUTHORIZED = samples.authorized_voucher()  # 8202, 38,600.50, agency 102003
CARD = dataclasses.replace(
    samples.card_repayment(),
    details=(
        VoucherDetail(
            id="1", pay_amt_fen=86_000, exp_func_code="2100201", card_no="6227000000001234567", spend_id="S1"
        ),
        VoucherDetail(
            id="2", pay_amt_fen=42_800, exp_func_code="2100201", card_no="6227000000009999990", spend_id="S2"
        ),
    ),
)


def decide(rules: list[Rule], voucher: Voucher = DIRECT, seed: int = 0, attempt: int = 1) -> Decision:
    return RuleSet(rules).decide(voucher, Random(seed), attempt=attempt)


def test_no_rule_means_pay_and_no_randomness_drawn() -> None:
    """Without a matching rule the voucher is paid normally, and the rng is left untouched."""
    rng = Random(5)
    state = rng.getstate()
    assert RuleSet().decide(DIRECT, rng) == Decision()
    assert RuleSet([Rule(Match(vt_code="8202"), Refuse("x"))]).decide(DIRECT, rng) == Decision()
    assert rng.getstate() == state


def test_first_matching_rule_wins() -> None:
    """The first rule whose match holds decides; later matching rules are ignored."""
    rules = [
        Rule(Match(vt_code="8202"), Refuse("not me"), "authorized"),
        Rule(Match(agency_code="101*"), Refuse("first"), "education"),
        Rule(Match(), Refuse("second"), "everything"),
    ]
    decision = decide(rules)
    assert (decision.rule_index, decision.rule_name, decision.refuse_reason) == (1, "education", "first")
    assert decide(rules, AUTHORIZED).refuse_reason == "not me"


@pytest.mark.parametrize(
    ("match", "voucher", "expected"),
    [
        (Match(payee_acct="6222020000000000123"), DIRECT, True),
        (Match(payee_acct="6222020000000000124"), DIRECT, False),
        (Match(payee_acct="622202*"), DIRECT, True),
        (Match(payee_acct="6222020000000000[0-1]2?"), DIRECT, True),
        (Match(pay_acct="4501000000000001"), DIRECT, True),
        (Match(pay_acct="4501000000000001"), AUTHORIZED, False),
        (Match(agency_code="102003"), AUTHORIZED, True),
        (Match(agency_code="102003"), DIRECT, False),
        (Match(vt_code="5201"), DIRECT, True),
        (Match(vt_code="5201"), AUTHORIZED, False),
        (Match(business_type_code="2"), CARD, True),
        (Match(business_type_code="2"), AUTHORIZED, False),
        (Match(voucher_no="5201*123"), DIRECT, True),
        (Match(voucher_no="8202*"), DIRECT, False),
        (Match(amount_min_fen=12_500_000), DIRECT, True),
        (Match(amount_min_fen=12_500_001), DIRECT, False),
        (Match(amount_max_fen=12_500_000), DIRECT, True),
        (Match(amount_max_fen=12_499_999), DIRECT, False),
        (Match(amount_min_fen=1, amount_max_fen=4_000_000), AUTHORIZED, True),
        (Match(vt_code="5201", agency_code="102003"), DIRECT, False),
        (Match(probability=1.0), DIRECT, True),
        (Match(probability=0.0), DIRECT, False),
        (Match(), DIRECT, True),
    ],
)
def test_each_match_criterion(match: Match, voucher: Voucher, expected: bool) -> None:
    """Each criterion (exact or glob, amount bounds inclusive, probability 0 and 1) selects what it says."""
    assert match.matches(voucher, Random(0)) is expected


def test_attempt_max_matches_only_early_arrivals() -> None:
    """`attempt_max` lets a resent voucher through the rule that caught its first arrival."""
    rules = [Rule(Match(attempt_max=1), DropAck())]
    assert not decide(rules, attempt=1).ack
    assert decide(rules, attempt=2) == Decision()


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Pay(), {}),
        (Refuse("收款账户已冻结"), {"refuse_reason": "收款账户已冻结"}),
        (Delay(30), {"receipt_delay_s": 30}),
        (
            ReturnAfter(60, fraction=Fraction(1, 2), reason="退"),
            {"return_plan": ReturnPlan(60, "退", Fraction(1, 2), None)},
        ),
        (NeverAnswer(), {"receipt_copies": 0}),
        (NeverAnswer(execute=False), {"receipt_copies": 0, "execute": False}),
        (AnswerTwice(), {"receipt_copies": 2}),
        (DropAck(), {"record": False, "ack": False, "execute": False, "receipt_copies": 0}),
        (Disconnect(), {"record": False, "ack": False, "disconnect": True, "execute": False, "receipt_copies": 0}),
        (Disconnect(execute=True), {"ack": False, "disconnect": True}),
        (FailDetails("卡片已挂失", card_no="*9990"), {}),  # not a card repayment: no detail to fail
    ],
)
def test_each_action(action: object, expected: dict[str, Any]) -> None:
    """Each action sets exactly its part of the decision; everything else stays 'pay normally'."""
    decision = decide([Rule(Match(), action, "r")])  # type: ignore[arg-type]
    assert decision == dataclasses.replace(Decision(rule_index=0, rule_name="r"), **expected)


def test_actions_combine() -> None:
    """Several actions in one rule combine: a late receipt sent twice."""
    decision = decide([Rule(Match(), (Delay(5), AnswerTwice()))])
    assert (decision.receipt_delay_s, decision.receipt_copies) == (5, 2)


def test_fail_details_by_card_glob_then_ledger_pays_the_rest() -> None:
    """fail_details picks the details by card; the ledger then pays the others and reports partial success."""
    decision = decide([Rule(Match(business_type_code="2"), FailDetails("卡片已挂失", card_no="*9990"))], CARD)
    assert decision.failed_details == (("2", "卡片已挂失"),)
    outcome = Ledger("ICBC").pay(CARD, date(2026, 11, 23), failed_details=dict(decision.failed_details))
    assert [(d.id, d.paid) for d in outcome.details] == [("1", True), ("2", False)]
    assert outcome.paid_fen == 86_000


def test_fail_details_probability_per_detail() -> None:
    """With a probability, each detail fails on its own draw; over many vouchers about that share fails."""
    rules = RuleSet([Rule(Match(), FailDetails("卡片已挂失", probability=0.25))])
    rng = Random(11)
    failed = sum(len(rules.decide(CARD, rng).failed_details) for _ in range(4_000))
    assert 0.22 <= failed / 8_000 <= 0.28


def test_probability_is_honoured_with_a_seeded_rng() -> None:
    """A 30 % rule matches about 30 % of 10 000 vouchers, and the same seed gives the same choices."""
    rules = RuleSet([Rule(Match(probability=0.3), Refuse("抽中"))])

    def run(seed: int) -> list[bool]:
        rng = Random(seed)
        return [rules.decide(DIRECT, rng).refuse_reason is not None for _ in range(10_000)]

    hits = run(99)
    assert 0.28 <= sum(hits) / len(hits) <= 0.32
    assert run(99) == hits
    assert run(100) != hits


def test_probability_draws_only_when_the_rest_matched() -> None:
    """A rule's probability is drawn only once its other criteria hold, so unrelated rules do not shift the rng."""
    rng = Random(1)
    state = rng.getstate()
    RuleSet([Rule(Match(vt_code="8202", probability=0.5), Refuse("x"))]).decide(DIRECT, rng)
    assert rng.getstate() == state
    RuleSet([Rule(Match(vt_code="5201", probability=0.5), Refuse("x"))]).decide(DIRECT, rng)
    assert rng.getstate() != state


@given(
    paid_fen=st.integers(0, 10**12),
    amount_fen=st.none() | st.integers(1, 10**12),
    fraction=st.fractions(min_value=Fraction(1, 1000), max_value=1),
)
def test_return_plan_never_returns_more_than_paid(paid_fen: int, amount_fen: int | None, fraction: Fraction) -> None:
    """A planned return is between 1 fen and what was paid (0 when nothing was)."""
    plan = ReturnPlan(1, "退", None if amount_fen else fraction, amount_fen)
    amount = plan.amount_for(paid_fen)
    assert amount == 0 if paid_fen == 0 else 1 <= amount <= paid_fen


def test_return_plan_amounts() -> None:
    """Fractions round down to whole fen, fixed amounts are capped at what was paid, none means all."""
    assert ReturnPlan(0, "退", Fraction(1, 3)).amount_for(100) == 33
    assert ReturnPlan(0, "退", amount_fen=500).amount_for(300) == 300
    assert ReturnPlan(0, "退").amount_for(12_345) == 12_345


@pytest.mark.parametrize(
    ("actions", "where"),
    [
        ((), "action"),
        ((Refuse("a"), Refuse("b")), "action[1]"),
        ((Pay(), Refuse("a")), "action[1]"),
        ((Refuse("a"), ReturnAfter(1)), "action[1]"),
        ((NeverAnswer(), AnswerTwice()), "action[1]"),
        ((Delay(1), DropAck()), "action[1]"),
        ((Disconnect(), Delay(1)), "action[0]"),
        ((NeverAnswer(execute=False), FailDetails("x")), "action"),
    ],
)
def test_contradictory_actions_are_refused(actions: tuple[object, ...], where: str) -> None:
    """A rule cannot repeat an action or combine contradictory ones; the error names the action."""
    with pytest.raises(RuleError) as info:
        Rule(Match(), actions)  # type: ignore[arg-type]
    assert info.value.where == where


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda: Match(amount_min_fen=10, amount_max_fen=5), "amount_max_fen"),
        (lambda: Match(probability=1.5), "probability"),
        (lambda: Match(payee_acct=""), "payee_acct"),
        (lambda: Match(attempt_max=0), "attempt_max"),
        (lambda: Refuse("原因" * 101), "reason"),
        (lambda: Delay(-1), "delay_s"),
        (lambda: ReturnAfter(1, fraction=Fraction(3, 2)), "fraction"),
        (lambda: ReturnAfter(1, fraction=Fraction(1, 2), amount_fen=5), "fraction"),
        (lambda: ReturnAfter(1, amount_fen=0), "amount_fen"),
        (lambda: FaultProfile(drop_prob=-0.1), "drop_prob"),
        (lambda: FaultProfile(delay_ms_max=1.5), "delay_ms_max"),  # type: ignore[arg-type]
    ],
)
def test_invalid_values_name_their_field(make: object, where: str) -> None:
    """Built in code, a bad match, action or profile is refused naming the field."""
    with pytest.raises(RuleError) as info:
        make()  # type: ignore[operator]
    assert info.value.where == where


# --- rules files ----------------------------------------------------------------------------------------------


def test_example_file_loads_and_behaves() -> None:
    """The shipped example loads, with its fault profile, and its first rule refuses the frozen payee."""
    rules = RuleSet.load(EXAMPLE)
    assert len(rules.rules) == 7 and rules.faults is not None and rules.faults.delay_ms_max == 200
    decision = rules.decide(DIRECT, Random(0))
    assert (decision.rule_index, decision.refuse_reason) == (0, "收款账户已冻结")
    assert rules.rules[1].actions == (ReturnAfter(3600, fraction=Fraction(1, 2), reason="收款人账户名称不符"),)


def test_json_and_toml_are_the_same_format(tmp_path: Path) -> None:
    """A JSON file with the same structure loads to the same rules."""
    doc = {
        "rules": [
            {
                "name": "slow",
                "match": {"vt_code": "5201", "amount_min_fen": 100},
                "action": {"kind": "delay", "delay_s": 5},
            },
            {
                "match": {"probability": 0.5},
                "action": ["answer_twice", {"kind": "return_after", "after_s": 1, "fraction": "1/3"}],
            },
        ],
        "faults": {"drop_prob": 0.1},
    }
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    toml = tmp_path / "bank.toml"
    toml.write_text(
        "\n".join(
            [
                "[[rules]]",
                'name = "slow"',
                'match = { vt_code = "5201", amount_min_fen = 100 }',
                'action = { kind = "delay", delay_s = 5 }',
                "[[rules]]",
                "match = { probability = 0.5 }",
                'action = ["answer_twice", { kind = "return_after", after_s = 1, fraction = "1/3" }]',
                "[faults]",
                "drop_prob = 0.1",
            ]
        ),
        encoding="utf-8",
    )
    from_json, from_toml = RuleSet.load(path), RuleSet.load(toml)
    assert from_json.rules == from_toml.rules and from_json.faults == from_toml.faults == FaultProfile(drop_prob=0.1)
    assert from_json.rules[1].actions[1] == ReturnAfter(1, fraction=Fraction(1, 3))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            '[[rules]]\naction = "pay"\n[[rules]]\nmatch = { amount_min_fen = 1.5 }\naction = "pay"',
            "rules[1].match.amount_min_fen",
        ),
        ('[[rules]]\nmatch = { payee = "1" }\naction = "pay"', "rules[0].match.payee"),
        ('[[rules]]\nname = "x"\naction = { kind = "pay_twice" }', 'rules[0] ("x").action.kind'),
        ('[[rules]]\naction = { kind = "refuse" }', "rules[0].action.reason"),
        ('[[rules]]\naction = { kind = "refuse", reason = "a", because = "b" }', "rules[0].action.because"),
        (
            '[[rules]]\naction = "pay"\n[[rules]]\naction = "pay"\n'
            '[[rules]]\naction = ["pay", { kind = "refuse", reason = "a" }]',
            "rules[2].action[1]",
        ),
        ('[[rules]]\nmatch = { probability = 2 }\naction = "pay"', "rules[0].match.probability"),
        ('[[rules]]\nmatch = { vt_code = 5201 }\naction = "pay"', "rules[0].match.vt_code"),
        ('[[rules]]\nmatch = { vt_code = "5201" }', "rules[0].action"),
        ('[[rules]]\naction = { kind = "never_answer", execute = "yes" }', "rules[0].action.execute"),
        ('[[rules]]\naction = { kind = "return_after", after_s = 1, fraction = "half" }', "rules[0].action.fraction"),
        ("[[rules]]\naction = 7", "rules[0].action"),
        ("[faults]\ndrop_prob = 2", "faults.drop_prob"),
        ("[faults]\nloss = 0.1", "faults.loss"),
        ("rules = 3", "rules"),
        ("[other]\nx = 1", "other"),
    ],
)
def test_load_errors_name_the_rule_and_field(tmp_path: Path, text: str, where: str) -> None:
    """Every problem in a rules file is reported with the file, the rule's index (and name) and the field."""
    path = tmp_path / "bank.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleError) as info:
        RuleSet.load(path)
    assert info.value.where == f"bank.toml: {where}"
    assert str(info.value).startswith(f"bank.toml: {where}: ")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bank.toml", "[[rules]\n", "not valid TOML"),
        ("bank.json", "{", "not valid JSON"),
        ("bank.yaml", "rules: []", ".toml or .json"),
        ("bank.toml", b"\xff\xfe", "not valid TOML"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: str | bytes, problem: str) -> None:
    """Syntax errors, undecodable bytes and unknown formats are RuleErrors naming the file."""
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RuleError, match=problem) as info:
        RuleSet.load(path)
    assert info.value.where == name


def test_missing_file(tmp_path: Path) -> None:
    """A missing rules file is a RuleError, not an OSError."""
    with pytest.raises(RuleError, match="cannot be read"):
        RuleSet.load(tmp_path / "none.toml")


# --- fault plan -----------------------------------------------------------------------------------------------


def run_plan(profile: FaultProfile, seed: int, count: int) -> list[Send[int] | Drop]:
    plan: FaultPlan[int] = FaultPlan(profile, Random(seed))
    steps: list[Send[int] | Drop] = []
    for n in range(count):
        steps += plan.outbound(n)
    return steps + list(plan.flush())


def test_perfect_link_sends_everything_in_order() -> None:
    """The default profile sends each message once, in order, without delay."""
    assert run_plan(FaultProfile(), 1, 5) == [Send(n, 0) for n in range(5)]


def test_certain_faults() -> None:
    """Probability 1 faults always happen: drop loses all, duplicate doubles, reorder swaps pairs, disconnect drops."""
    assert run_plan(FaultProfile(drop_prob=1), 1, 4) == []
    assert [s.item for s in run_plan(FaultProfile(duplicate_prob=1), 1, 3) if isinstance(s, Send)] == [0, 0, 1, 1, 2, 2]
    assert [s.item for s in run_plan(FaultProfile(reorder_prob=1), 1, 5) if isinstance(s, Send)] == [1, 0, 3, 2, 4]
    assert run_plan(FaultProfile(disconnect_prob=1), 1, 2) == [Send(0, 0), Drop(), Send(1, 0), Drop()]


def test_disconnect_loses_the_held_message() -> None:
    """A message held back for reordering is lost when the connection drops."""
    plan: FaultPlan[str] = FaultPlan(FaultProfile(reorder_prob=1, disconnect_prob=1), Random(0))
    assert plan.outbound("a") == [Drop()]
    assert plan.holding is None and plan.flush() == []


def test_fault_draws_are_fixed_per_message() -> None:
    """Each message draws exactly six numbers whatever the profile, so later messages keep their draws."""
    a, b = Random(3), Random(3)
    draw_faults(FaultProfile(), a)
    draw_faults(FaultProfile(drop_prob=0.5, delay_ms_max=100), a)
    for _ in range(12):
        b.random()
    assert a.getstate() == b.getstate()


@given(
    seed=st.integers(0, 2**32 - 1),
    duplicate=st.floats(0, 1),
    reorder=st.floats(0, 1),
    delay_ms_max=st.integers(0, 1_000),
    count=st.integers(0, 30),
)
def test_without_drops_every_message_arrives(
    seed: int, duplicate: float, reorder: float, delay_ms_max: int, count: int
) -> None:
    """With no drop and no disconnect every message is sent at least once (after a flush), at most twice,
    with a delay within the limit; and the same seed gives the same plan."""
    profile = FaultProfile(duplicate_prob=duplicate, reorder_prob=reorder, delay_ms_max=delay_ms_max)
    steps = run_plan(profile, seed, count)
    sends = [s for s in steps if isinstance(s, Send)]
    assert len(sends) == len(steps)
    counts = [sum(s.item == n for s in sends) for n in range(count)]
    assert all(1 <= c <= 2 for c in counts)
    assert all(0 <= s.delay_ms <= delay_ms_max for s in sends)
    assert run_plan(profile, seed, count) == steps
