"""The simulated bank sends a request answered 91099 ("nothing recorded, resend") again shortly, same bytes, on the
link it has (before, only after reconnecting); once acknowledged, or once stopped, nothing more is sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.config import Config
from gateway.demo import bank_setup
from protocols import samples
from protocols.messages import Head, Message, Reply
from simulators.bank import SimulatedBank


@dataclass
class _Link:
    signed_on: bool = True
    transport: StringTransport = field(default_factory=StringTransport)


def _answer(bank: SimulatedBank, msg_id: str, result: int) -> None:
    head = Head(
        msg_no="9120",
        msg_id=f"R{result}{msg_id[-8:]}",
        msg_ref=msg_id,
        src=bank.setup.node,
        des=bank.setup.code,
        work_date=bank.today(),
        send_time=bank.now_cst(),
    )
    bank.handle(Message(head, Reply(ori_msg_no="2252", result=result, add_word="")))


def test_a_temporary_failure_is_sent_again_until_acknowledged(config: Config) -> None:
    clock = Clock()
    bank = SimulatedBank(bank_setup(config, "ICBC", ("127.0.0.1", 1)), clock, temporary_retry_s=0.5)
    link = _Link()
    bank.connection = link  # type: ignore[assignment]
    msg_id = bank.request(samples.return_notice())
    first = link.transport.value()
    assert first and msg_id in bank.unacked
    link.transport.clear()

    _answer(bank, msg_id, 91099)
    _answer(bank, msg_id, 91099)  # a second 91099 before the retry does not schedule a second one
    clock.advance(0.4)
    assert link.transport.value() == b""
    clock.advance(0.1)
    assert link.transport.value() == first  # the same MsgId and bytes
    assert bank.stats.temporary_retries == 1
    link.transport.clear()

    _answer(bank, msg_id, 90000)
    assert msg_id not in bank.unacked
    clock.advance(5)
    assert link.transport.value() == b""

    other = bank.request(samples.return_notice())
    link.transport.clear()
    _answer(bank, other, 91099)
    bank.stop()
    assert clock.getDelayedCalls() == []  # stopping cancels the pending retry
    clock.advance(5)
    assert link.transport.value() == b""
