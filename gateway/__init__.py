"""The Twisted service: bank sessions, payment and card services, outbox, store, web UI and API, CLI."""
