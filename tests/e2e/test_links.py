"""Bank links over time: several connections of one bank, sign-off, and a gateway restarted in between.

PROTOCOL.md §1 and §4: replies go back on the connection the request came in on, gateway-initiated messages on
any live signed-on connection of the bank; after a sign-off the link gets nothing but replies. DESIGN.md: no
state lives only in a process's memory, so what was accepted before a restart is delivered after it.
"""

from __future__ import annotations

from protocols.messages import Ping, Reply, SignOff, SignOffReply
from tests.e2e.harness import E2E, direct_voucher, receipt_for


def test_replies_stay_on_their_link_and_a_signed_off_link_gets_nothing_else(e2e: E2E) -> None:
    """Two links of ICBC: each gets its own replies; after one signs off, the voucher goes to the other."""
    e2e.start()
    first, second = e2e.raw(), e2e.raw()
    for link in (first, second, first):
        reply = link.request(Ping())  # reply_to insists the reply names this link's own ping
        assert isinstance(reply.body, Reply) and reply.body.result == 90000

    off = first.request(SignOff(reason="日终签退"))
    assert isinstance(off.body, SignOffReply) and off.body.result == 90000
    refused = first.request(receipt_for(direct_voucher("5201450100000401")))
    assert isinstance(refused.body, Reply) and refused.body.result == 91006
    assert "9006" in refused.body.add_word, "signed off, the link must sign on again before anything else"

    voucher = direct_voucher("5201450100000402")
    (key,) = e2e.submit(voucher)
    message = second.expect("5201")
    assert message.body == voucher
    first.request(Ping())  # a round trip on the signed-off link: had the voucher gone there, it would be here now
    assert first.inbox == [], "a signed-off link must not be sent the bank's vouchers"
    second.ack(message)
    e2e.wait_state(key, "DELIVERED")


def test_what_was_accepted_before_a_restart_is_delivered_after_it(e2e: E2E) -> None:
    """Submitted while no bank is connected, the gateway stopped and started again: the voucher is paid once."""
    e2e.instance.fix_ports()  # the bank reconnects where the restarted gateway listens
    e2e.start()
    voucher = direct_voucher("5201450100000403")
    (key,) = e2e.submit(voucher)
    assert e2e.voucher(key)["state"] == "ACCEPTED"  # no bank link: it waits in the outbox
    e2e.stop_gateway()
    e2e.start()
    bank = e2e.bank()
    found = e2e.wait_state(key, "PAID")
    assert [t["to"] for t in found["timeline"]] == ["ACCEPTED", "SENT", "DELIVERED", "PAID"]
    assert found["chain_ok"] and len([o for o in bank.ledger.outcomes() if o.key == key]) == 1

    e2e.stop_gateway()  # and with the bank connected: it reconnects to the new process and pays the next one
    e2e.start()
    (second,) = e2e.submit(direct_voucher("5201450100000404"))
    e2e.wait_state(second, "PAID")
    assert bank.stats.connections == 2
