"""Simulated banks in their own dialects, over mutual TLS: their end-of-day files, in each dialect's declared format,
reconcile with `tgw reconcile --statement FILE` (no `--format`) without a break.

Each bank pays or refuses what the gateway sends (refusing payees whose account ends in 3), returns one payment
after it was paid, and writes the day's statement from its own ledger in the format its dialect declares
(`simulators/statements.py`: ICBC camt.053, CCB fixed-width GBK, BOCOM comma-separated, GXNX `|`-separated GBK).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Final

import pytest

from banks import registry
from gateway import cli
from gateway.demo import bank_setup
from protocols import samples
from protocols.messages import Voucher
from simulators import statements
from simulators.bank import SimulatedBank
from simulators.rules import Match, Pay, Refuse, Rule, RuleSet
from tests.e2e.harness import E2E, settled_snapshot

BANKS: Final = {"ICBC": "icbc", "CCB": "ccb", "BOCOM": "bocom", "GXNX": "gxnx"}
RULES: Final = RuleSet(
    [Rule(Match(payee_acct="*3"), (Refuse("收款账户已冻结"),), "frozen payee"), Rule(Match(), (Pay(),), "pay")]
)
VOUCHERS: Final = 8


def vouchers(bank_index: int) -> list[Voucher]:
    return [
        dataclasses.replace(
            samples.direct_voucher(f"5201450{bank_index}{n:08d}", (100_000 + 137 * n,)),
            payee_acct_no=f"622202000000{bank_index}{n:06d}",
        )
        for n in range(1, VOUCHERS + 1)
    ]


@pytest.mark.banks(*(f"{code}:{dialect}" for code, dialect in BANKS.items()))
def test_simulated_banks_write_their_declared_statement_files_and_they_reconcile(
    e2e: E2E, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e2e.start()
    cfg = e2e.instance.config()
    assert e2e.gateway is not None
    banks: dict[str, SimulatedBank] = {}
    for code in BANKS:
        bank = SimulatedBank(
            bank_setup(cfg, code, e2e.gateway.bank_address), e2e.rt.reactor, rules=RULES, reconnect_delay_s=0.1
        )
        banks[code] = e2e.banks[code] = bank
        e2e.rt.call(bank.start)
        e2e._cleanups.append(lambda bank=bank: e2e.rt.call(bank.stop))
        e2e.wait_signed_on(bank)
    keys = []
    for index, code in enumerate(BANKS, 1):
        keys += e2e.submit(*vouchers(index), bank=code)
    e2e.until_store(settled_snapshot({str(k) for k in keys}), what="every voucher final")
    returned = []
    for bank in banks.values():
        paid = next(o for o in bank.ledger.outcomes() if o.paid)
        e2e.rt.call(bank.return_payment, paid.key, paid.paid_fen)
        returned.append(paid.key)
    for key in returned:
        e2e.wait_state(key, "RETURNED")
    e2e.stop_gateway()

    for code, bank in banks.items():
        # The bank's pay dates are its own clock's (China time): a run that crosses midnight there books some
        # lines on the next day, so every day the bank booked anything on is reconciled, each on its own.
        today = e2e.rt.call(bank.today)
        days = [d for d in (today - timedelta(days=1), today) if bank.ledger.statement_lines(d)]
        lines_by_day = {d: bank.ledger.statement_lines(d) for d in days}
        every = [x for lines in lines_by_day.values() for x in lines]
        assert len(every) == VOUCHERS + 1 and {x.pro_state for x in every} == {0, 1, 2}, code
        source = registry.get(BANKS[code]).statement_format
        for day, lines in lines_by_day.items():
            files = statements.write(
                tmp_path / f"{code}-{day:%Y%m%d}.stmt", source, day, lines, bank=code, node=cfg.node
            )
            argv = ["reconcile", "--config", str(cfg.path), "--date", f"{day:%Y%m%d}", "--bank", code, "--json"]
            for f in files:
                argv += ["--statement", str(f)]
            exit_code = cli.main(argv)
            captured = capsys.readouterr()
            assert exit_code == 0, f"{code} ({source.kind}): {captured.out}{captured.err}"
            summary = json.loads(captured.out)
            assert summary["breaks"] == {} and summary["matched"] == len(lines), f"{code}: {summary}"
            assert summary["source"].startswith(source.text.name if source.text else source.kind.replace("053", ".053"))
