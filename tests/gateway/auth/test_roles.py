"""The role table: each role may do exactly what the policy says."""

from __future__ import annotations

import pytest

from gateway.auth.roles import PERMISSIONS, Permission, Role, allowed

P = Permission

EXPECTED = {
    Role.VIEWER: {P.VIEW},
    Role.OPERATOR: {P.VIEW, P.CANCEL, P.RESEND, P.RECON_PROPOSE},
    Role.APPROVER: {P.VIEW, P.CANCEL, P.RESEND, P.RECON_PROPOSE, P.RESOLVE, P.CARD_DECIDE, P.RECON_APPROVE},
    Role.ADMIN: set(Permission),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_every_role_and_permission_pair(role: Role, permission: Permission) -> None:
    assert allowed(role, permission) == (permission in EXPECTED[role])
    assert allowed(role.value, permission) == (permission in EXPECTED[role])


def test_unknown_roles_may_do_nothing() -> None:
    assert not any(allowed("root", p) for p in Permission)
    assert set(PERMISSIONS) == set(Role)
