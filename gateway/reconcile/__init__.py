"""The gateway side of reconciliation (issue 6): the store port and the `tgw reconcile` run."""
