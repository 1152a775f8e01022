"""Dashboard roles and what each may do, as a table (role → permissions).

- `viewer` watches: overview, transactions, vouchers and their signed messages, cards, reconciliation, banks.
- `operator` also acts on the day's work: cancel a voucher before it is sent, resend to a reconnected bank.
- `approver` also decides: resolve a voucher in doubt after the bank's status, approve card repayments and
  reconciliation resolutions (the second pair of eyes: :mod:`gateway.dashboard` refuses an approval by the person
  who proposed it).
- `admin` also manages the bank PKI (issue, revoke) and reads the audit log; accounts are managed with
  `tgw users` on the gateway's host.

A role is a set of permissions, not a rank: a check names the permission it needs (:func:`allowed`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    """An operator's role (stored in `operators.role`)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


class Permission(StrEnum):
    """One thing a person may do on the dashboard."""

    VIEW = "view"
    CANCEL = "voucher.cancel"
    RESEND = "voucher.resend"
    RESOLVE = "voucher.resolve"
    CARD_DECIDE = "card.decide"
    RECON_PROPOSE = "recon.propose"
    RECON_APPROVE = "recon.approve"
    CERT_ISSUE = "cert.issue"
    CERT_REVOKE = "cert.revoke"
    AUDIT_READ = "audit.read"


P = Permission
_VIEWER: Final = frozenset({P.VIEW})
_OPERATOR: Final = _VIEWER | {P.CANCEL, P.RESEND, P.RECON_PROPOSE}
_APPROVER: Final = _OPERATOR | {P.RESOLVE, P.CARD_DECIDE, P.RECON_APPROVE}
_ADMIN: Final = frozenset(Permission)

#: The whole policy.
PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.APPROVER: _APPROVER,
    Role.ADMIN: _ADMIN,
}

#: Chinese names of the roles, for the dashboard.
ROLE_LABELS: Final = {Role.VIEWER: "查看员", Role.OPERATOR: "操作员", Role.APPROVER: "审批员", Role.ADMIN: "管理员"}


def allowed(role: Role | str, permission: Permission) -> bool:
    """Whether `role` may do `permission` (an unknown role may do nothing)."""
    try:
        return permission in PERMISSIONS[Role(role)]
    except ValueError:
        return False
