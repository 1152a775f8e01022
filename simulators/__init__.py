"""Simulated banks and the finance-side feeder; they speak to the gateway over real TLS."""
