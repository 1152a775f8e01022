"""The operators' dashboard, served by the gateway itself on its web port (Twisted web, server-rendered HTML).

| path | who | what |
|---|---|---|
| `/login` | anyone | sign in (the only page without a session), `/static/app.css` with it |
| `POST /logout` | signed in | sign out |
| `/overview` | viewer | banks' links and certificates, throughput, states, queue, in doubt, cards, reconciliation |
| `/events` | viewer | the overview's server-sent events |
| `/transactions` | viewer | search and filter vouchers, paged |
| `/vouchers/KEY` | viewer | one voucher: facts, timeline, messages; `/messages/ID` the signed XML |
| `POST /vouchers/KEY/cancel`, `/resend` | operator | cancel before sending; resend to a reconnected bank |
| `POST /vouchers/KEY/resolve` | approver | resolve a voucher in doubt with the bank's status |
| `/cards`, `/reconciliation` | viewer; acting: operator, approver | card spending, repayments; runs, breaks, 4 eyes |
| `/banks` | viewer; `POST …/revoke`, `…/issue`: admin | banks, certificates and expiry, the CRL |
| `/audit` | admin | the audit log |
| `/metrics` | signed in, or the metrics token | Prometheus metrics (:mod:`gateway.metrics`) |

`/api/…` (bearer token) and `/healthz` stay as :mod:`gateway.web` defines them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web.resource import Resource

if TYPE_CHECKING:
    from gateway.hub import Hub


def mount(root: Resource, hub: Hub) -> Resource:
    """Put the dashboard's pages on the web port's root resource; returns `root`."""
    from gateway.dashboard import banks, overview, server, services, transactions

    dash = server.Dashboard(hub)
    pages: dict[bytes, Resource] = {
        b"": server.Home(dash),
        b"login": server.Login(dash),
        b"logout": server.Logout(dash),
        b"static": server.Static(dash),
        b"overview": overview.Overview(dash),
        b"events": overview.Events(dash),
        b"transactions": transactions.Transactions(dash),
        b"vouchers": transactions.Vouchers(dash),
        b"cards": services.Cards(dash),
        b"reconciliation": services.Reconciliation(dash),
        b"banks": banks.Banks(dash),
        b"audit": server.Audit(dash),
        b"metrics": server.MetricsPage(dash),
    }
    for name, page in pages.items():
        root.putChild(name, page)
    root.dashboard = dash  # type: ignore[attr-defined]  # for tests and for stopping its live feed
    return root
