"""Nightly reconciliation: statement readers, the streaming matcher, break classes, reports."""
