"""The store's exception tree: what a repository call or a transaction can refuse, and why.

:class:`StoreUnavailable` is the only *temporary* one: the transaction was rolled back, the caller answers
91099 ("temporary failure, nothing was recorded") and the peer retries with the same `MsgId`. Every other
error is a definite answer about the data (a duplicate, a stale version, an exhausted quota).
"""

from __future__ import annotations

from protocols.errors import ResultCode


class StoreError(Exception):
    """Base of every error raised by `gateway.store`."""


class StoreUnavailable(StoreError):
    """The database could not be reached, was busy beyond its timeout, or lost the connection mid-transaction.

    The transaction was rolled back (nothing was recorded), except in the one case no client can rule out: the
    connection broke *during* COMMIT. That case is safe because every effect is keyed (`MsgId` per sender, the
    voucher key), so the retry finds what was recorded and answers the same.
    """

    result_code = ResultCode.TEMPORARY


class TransientConflict(StoreUnavailable):
    """PostgreSQL chose this transaction as a deadlock victim (40P01) or failed it for serialization (40001).

    Rolled back completely, like every StoreUnavailable; unlike an outage it is worth running again at once
    (:meth:`gateway.hub.Hub.run_retrying` does), since the other transaction has gone through by then.
    """


#: SQLSTATEs of a transaction that lost to another one and may simply be run again.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(orig: object) -> bool:
    """Whether a DB-API error (psycopg's, with `sqlstate`) is a deadlock or a serialization failure."""
    return getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES


class NotFound(StoreError):
    """The row the caller named does not exist."""


class ConcurrentUpdate(StoreError):
    """An optimistic update found a different version than the caller read: someone else changed the row."""

    def __init__(self, table: str, row_id: int, expected_version: int, actual_version: int) -> None:
        self.table = table
        self.row_id = row_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"{table} {row_id}: expected version {expected_version}, found {actual_version}")


class DuplicateVoucher(StoreError):
    """A voucher with the same key (`AdmDivCode`+`StYear`+`VtCode`+`VoucherNo`) is already recorded."""

    def __init__(self, key: str, existing_id: int | None) -> None:
        self.key = key
        self.existing_id = existing_id
        super().__init__(f"voucher {key} already recorded (id {existing_id})")


class DuplicateMessage(StoreError):
    """An inbound `MsgId` of this sender is already recorded (PROTOCOL.md §7); roll back and replay its answer."""

    def __init__(self, bank_code: str, msg_id: str) -> None:
        self.bank_code = bank_code
        self.msg_id = msg_id
        super().__init__(f"message {msg_id} from {bank_code} already recorded")


class QuotaExceeded(StoreError):
    """An agency's remaining quota (granted − used) is smaller than the amount asked for."""

    result_code = ResultCode.REFUSED

    def __init__(self, quota_key: str, amount_fen: int, available_fen: int) -> None:
        self.quota_key = quota_key
        self.amount_fen = amount_fen
        self.available_fen = available_fen
        super().__init__(f"quota {quota_key}: {amount_fen} fen asked, {available_fen} fen available")


class QuotaUnderflow(StoreError):
    """A release of more quota than is in use: a bookkeeping bug, refused rather than clamped."""

    def __init__(self, quota_key: str, amount_fen: int, used_fen: int) -> None:
        self.quota_key = quota_key
        self.amount_fen = amount_fen
        self.used_fen = used_fen
        super().__init__(f"quota {quota_key}: release of {amount_fen} fen, only {used_fen} fen in use")
