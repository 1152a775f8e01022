"""Treasury payments: the voucher state machine (pure) and the payment service on the store."""
