"""Nightly reconciliation (日终对账): statement readers, the streaming matcher, break classes, reports.

The pure core, with no database, network or clock (docs/reconciliation.md):

* :mod:`reconciliation.model`: ledger entries, statement lines, break classes, breaks, the run result.
* :mod:`reconciliation.ports`: the ledger port the gateway implements, the scratch area, the result sink.
* :mod:`reconciliation.readers`: the 4006 statement, text files (:mod:`reconciliation.formats`), camt.053.
* :mod:`reconciliation.matcher`: the merge of ledger and statement, the classes, carrying breaks over.
* :mod:`reconciliation.report`: HTML, CSV, JSON, and the 2507 result message.
* :mod:`reconciliation.inject`: discrepancies of every class, for the simulated banks and the oracle test.
* :mod:`reconciliation.extsort` and :mod:`reconciliation.xmlstream`: flat-memory sorting and XML parsing.
* :mod:`reconciliation.bench`: the benchmark (`tgw bench reconcile`); it reads the clock, nothing imports it.
"""
