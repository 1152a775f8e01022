"""The resolution workflow of reconciliation breaks (issue 6 §4): assign, comment, resolve with a reason code.

A resolution that changes a voucher's state needs a second operator's approval (four eyes): the first operator
proposes it (`PROPOSED`), a different operator with the approver role approves (`APPROVED`, and the correction is
applied through the payment service's one transition) or rejects it (`REJECTED`, the break stays open). A
resolution that changes nothing (a timing difference, a bank correction to come) is applied at once
(`RESOLVED`). Everything is appended to `recon_break_events` and to the voucher's history where a voucher changes.

The shared vocabulary (reason codes, :class:`Refused`) is defined here first; the store functions follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


class Refused(Exception):
    """A workflow step that is not allowed (unknown break, wrong state, the proposer approving, a bad reason)."""


@dataclass(frozen=True, slots=True)
class Reason:
    """A resolution's reason code; `event` is the voucher correction it applies (None: it changes no voucher)."""

    code: str
    zh: str
    en: str
    event: str | None = None  # a gateway.payments.machine.Event value (RECON_*), applied on approval

    @property
    def needs_approval(self) -> bool:
        """Four eyes: a resolution that changes a voucher's state needs a second operator."""
        return self.event is not None


REASONS: Final[tuple[Reason, ...]] = (
    Reason("TIMING", "跨日时差", "Cut-off timing, clears on a later statement"),
    Reason("BANK_CORRECTION", "银行更正", "The bank corrects its statement"),
    Reason("VERIFIED", "差异已核实", "Difference verified, nothing to change"),
    Reason("DUPLICATE_RECOVERED", "重复支付已追回", "Duplicate payment recovered by the bank"),
    Reason("OTHER", "其他", "Other (explained in the note)"),
    Reason("CONFIRMED_PAID", "确认已支付", "Bank proved it paid: record the voucher PAID", "recon_paid"),
    Reason("CONFIRMED_FAILED", "确认未支付", "Bank proved it did not pay: record the voucher FAILED", "recon_failed"),
    Reason("CONFIRMED_RETURNED", "确认已退票", "Bank proved the payment came back: RETURNED", "recon_returned"),
)
REASON_BY_CODE: Final = {r.code: r for r in REASONS}
