"""The gateway's database schema as SQLAlchemy Core tables: one `MetaData`, named constraints, explicit units.

Conventions, kept by every table here:

- Times are timezone-naive UTC (`DateTime` without time zone); :mod:`gateway.store.repo` converts aware values
  on the way in, and the caller injects "now" (nothing here reads the clock).
- Money is an integer number of fen in `BigInteger` columns whose names end in `_fen`.
- Every constraint and index has a deterministic name (:data:`NAMING_CONVENTION`), so that Alembic migrations
  can refer to it on SQLite and PostgreSQL alike.
- Columns that other code reads by name mirror the canonical messages (`protocols/messages.py`): `adm_div_code`,
  `st_year`, `vt_code`, `voucher_no`, `x_agent_business_no` …

Two indexes deviate on purpose from "one index per filtered column": `vouchers.state` is covered by the leading
column of `(state, deadline_at)`, and `outbox.bank_code` by the leading column of
`(bank_code, state, next_attempt_at)`, which is the exact shape of the dispatcher's claim query.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

#: Deterministic constraint and index names (the same on every backend, so that migrations can name them).
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)

#: Voucher states (the state machine that moves between them lives in the payment service, not here).
VOUCHER_STATES: Final = (
    "ACCEPTED",
    "SENT",
    "DELIVERED",
    "PAID",
    "FAILED",
    "REJECTED",
    "IN_DOUBT",
    "RETURNED",
    "CANCELLED",
)

#: Outbox row states: PENDING (to send) → SENT (on the wire, no 9120 yet) → ACKED (90000) or NACKED (refused).
OUTBOX_STATES: Final = ("PENDING", "SENT", "ACKED", "NACKED")

#: `archive.direction` values.
DIRECTIONS: Final = ("in", "out")

#: Lengths shared by several tables.
BANK_CODE_LEN: Final = 20
MSG_ID_LEN: Final = 32  # PROTOCOL.md §3: [A-Za-z0-9_-]{1,32}
MSG_NO_LEN: Final = 4
ACTOR_LEN: Final = 64
NODE_ID_LEN: Final = 64
SHA256_HEX_LEN: Final = 64


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL text of `column IN ('a', 'b', …)` for a CHECK constraint over a fixed code list."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


vouchers: Final = Table(
    "vouchers",
    metadata,
    Column("id", Integer, primary_key=True),
    # the voucher key (PROTOCOL.md §7): a voucher is paid at most once per key
    Column("adm_div_code", String(12), nullable=False),
    Column("st_year", Integer, nullable=False),
    Column("vt_code", String(4), nullable=False),
    Column("voucher_no", String(42), nullable=False, index=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False, index=True),
    Column("business_type_code", String(2), nullable=False),
    Column("agency_code", String(20), nullable=False, index=True),
    Column("agency_name", String(120), nullable=False),
    Column("payee_acct_no", String(40), nullable=False),
    Column("payee_acct_name", String(120), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("document", Text, nullable=False),  # protocols.jsonform.to_json of the canonical Voucher
    Column("msg_id", String(MSG_ID_LEN), nullable=True),  # MsgId of the outbound voucher message
    # what the bank's receipt said (PROTOCOL.md §5.2)
    Column("x_agent_business_no", String(42), nullable=True),
    Column("x_pay_date", Date, nullable=True),
    Column("x_pay_amt_fen", BigInteger, nullable=True),
    Column("returned_fen", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("reason", Text, nullable=True),
    Column("submitted_by", String(ACTOR_LEN), nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("updated_at", DateTime, nullable=False),
    Column("sent_at", DateTime, nullable=True),
    Column("deadline_at", DateTime, nullable=True),
    # optimistic concurrency: every update is `WHERE id = ? AND version = ?` and bumps it
    Column("version", Integer, nullable=False, default=1, server_default=text("1")),
    UniqueConstraint("adm_div_code", "st_year", "vt_code", "voucher_no"),
    Index(None, "state", "deadline_at"),
)

voucher_history: Final = Table(
    "voucher_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("voucher_id", Integer, ForeignKey("vouchers.id"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),  # 1, 2, … per voucher
    Column("at", DateTime, nullable=False),
    Column("event", String(32), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("actor", String(ACTOR_LEN), nullable=False),  # "operator:alice", "bank:ICBC", "system:deadline"
    Column("detail", Text, nullable=False),  # canonical JSON text, hashed exactly as stored
    Column("msg_id", String(MSG_ID_LEN), nullable=True),
    Column("prev_hash", String(SHA256_HEX_LEN), nullable=False),
    Column("hash", String(SHA256_HEX_LEN), nullable=False),
    UniqueConstraint("voucher_id", "seq"),
)

outbox: Final = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("msg_id", String(MSG_ID_LEN), nullable=False, unique=True),
    Column("msg_no", String(MSG_NO_LEN), nullable=False),
    Column("voucher_id", Integer, ForeignKey("vouchers.id"), nullable=True, index=True),
    Column("document", Text, nullable=False),  # {"head": {…}, "body": {…}} through protocols.jsonform
    Column("wire", LargeBinary, nullable=True),  # the exact signed bytes of the first send
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default=text("0")),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_sent_at", DateTime, nullable=True),
    Column("acked_at", DateTime, nullable=True),
    Column("result_code", Integer, nullable=True),
    Column("add_word", Text, nullable=True),
    Column("claimed_by", String(NODE_ID_LEN), nullable=True),  # the node holding the bank's session
    CheckConstraint(_in("state", OUTBOX_STATES), name="state"),
    Index(None, "bank_code", "state", "next_attempt_at"),
)

inbound: Final = Table(
    "inbound",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("msg_id", String(MSG_ID_LEN), nullable=False),
    Column("msg_no", String(MSG_NO_LEN), nullable=False),
    Column("content_digest", String(SHA256_HEX_LEN), nullable=False),  # sha256 hex of the Body's exclusive C14N
    Column("result", Integer, nullable=False),
    Column("add_word", Text, nullable=False),
    Column("reply_msg_no", String(MSG_NO_LEN), nullable=False),
    Column("received_at", DateTime, nullable=False),
    UniqueConstraint("bank_code", "msg_id"),  # PROTOCOL.md §7: MsgId is the idempotency key per sender
)

archive: Final = Table(
    "archive",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("direction", String(3), nullable=False),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False, index=True),
    Column("connection_id", String(64), nullable=True),
    Column("msg_id", String(MSG_ID_LEN), nullable=True, index=True),
    Column("msg_no", String(MSG_NO_LEN), nullable=True),
    Column("voucher_id", Integer, ForeignKey("vouchers.id"), nullable=True, index=True),
    Column("raw", LargeBinary, nullable=False),  # byte for byte as received or sent
    Column("verified", Boolean, nullable=True),  # None: not checked (unreadable, or not signed by design)
    Column("verify_detail", Text, nullable=True),
    Column("result_code", Integer, nullable=True),  # the Result we answered; every rejection is here
    CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
)

quotas: Final = Table(
    "quotas",
    metadata,
    Column("adm_div_code", String(12), primary_key=True),
    Column("st_year", Integer, primary_key=True),
    Column("agency_code", String(20), primary_key=True),
    Column("granted_fen", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("used_fen", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("updated_at", DateTime, nullable=False),
    # a backstop under the conditional UPDATE of repo.use_quota: the database itself refuses overspending
    CheckConstraint("used_fen >= 0", name="used_fen_nonnegative"),
    CheckConstraint("used_fen <= granted_fen", name="used_within_granted"),
)

quota_notices: Final = Table(
    "quota_notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("adm_div_code", String(12), nullable=False),
    Column("st_year", Integer, nullable=False),
    Column("voucher_no", String(42), nullable=False),
    Column("document", Text, nullable=False),  # protocols.jsonform.to_json of the QuotaNotice
    Column("total_fen", BigInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("adm_div_code", "st_year", "voucher_no"),  # the same 5106 never grants twice
)

meta: Final = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# --- official cards (issue 5; migration 0002) --------------------------------------------------------------------

#: Official-card spending states (the machine that moves between them: gateway.cards.machine).
CARD_STATES: Final = ("RECEIVED", "APPROVED", "REJECTED", "REPAYING", "REPAID")

card_spending: Final = Table(
    "card_spending",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("spend_id", String(42), nullable=False),  # PROTOCOL.md §5.4: unique per bank
    # the card number only as the masked form and a keyed hash (gateway.cards.plan); the number itself stays in
    # the signed 7101 of the archive (bank_code + msg_id), from which a repayment reads it back
    Column("card_masked", String(19), nullable=False),
    Column("card_hash", String(SHA256_HEX_LEN), nullable=False, index=True),
    Column("card_holder", String(120), nullable=False),
    Column("agency_code", String(20), nullable=False),
    Column("merchant_name", String(120), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("txn_date", Date, nullable=False),  # as the bank reports them: China Standard Time
    Column("txn_time", String(6), nullable=False),  # hhmmss
    Column("auth_code", String(20), nullable=False),
    Column("limit_date", Date, nullable=False),  # the repayment deadline (LimitDate)
    Column("state", String(10), nullable=False),
    Column("reason", Text, nullable=True),  # why rejected, or why the last repayment failed
    Column("msg_id", String(MSG_ID_LEN), nullable=False),  # the 7101 that first reported it
    # the repayment voucher it is (or last was) in, and its detail there
    Column("voucher_id", Integer, ForeignKey("vouchers.id"), nullable=True, index=True),
    Column("detail_id", String(42), nullable=True),
    Column("repay_attempts", Integer, nullable=False, default=0, server_default=text("0")),
    Column("repay_failures", Integer, nullable=False, default=0, server_default=text("0")),
    # quota held for it since its approval (0 once a repayment voucher carries it, or after a failed one)
    Column("quota_year", Integer, nullable=True),
    Column("quota_held_fen", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("reviewed_by", String(ACTOR_LEN), nullable=True),
    Column("received_at", DateTime, nullable=False),
    Column("reviewed_at", DateTime, nullable=True),
    Column("repaid_at", DateTime, nullable=True),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("bank_code", "spend_id"),
    CheckConstraint(_in("state", CARD_STATES), name="state"),
    CheckConstraint("amount_fen > 0", name="amount_positive"),
    CheckConstraint("quota_held_fen >= 0", name="quota_held_nonnegative"),
    Index(None, "agency_code", "state"),
    Index(None, "state", "limit_date"),
)

card_events: Final = Table(
    "card_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("spending_id", Integer, ForeignKey("card_spending.id"), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("event", String(32), nullable=False),
    Column("from_state", String(10), nullable=True),
    Column("to_state", String(10), nullable=False),
    Column("actor", String(ACTOR_LEN), nullable=False),  # "bank:ICBC", "api:finance", "system:cards"
    Column("detail", Text, nullable=False),  # JSON text; never a card number
    Column("msg_id", String(MSG_ID_LEN), nullable=True),
    Column("voucher_id", Integer, ForeignKey("vouchers.id"), nullable=True),
)

# --- operators of the dashboard (issue 7; migration 0003) -------------------------------------------------------

#: Dashboard roles, least to most trusted (what each may do: :mod:`gateway.auth.roles`).
OPERATOR_ROLES: Final = ("viewer", "operator", "approver", "admin")
#: `audit_log.outcome` values: done, refused (a role or a rule said no), failed (an error).
AUDIT_OUTCOMES: Final = ("ok", "refused", "failed")

operators: Final = Table(
    "operators",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(120), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),  # gateway.auth.passwords: "scrypt$N$r$p$salt$key"
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("failed_logins", Integer, nullable=False, default=0, server_default=text("0")),
    Column("locked_until", DateTime, nullable=True),  # too many wrong passwords in a row
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("password_changed_at", DateTime, nullable=False),
    Column("last_login_at", DateTime, nullable=True),
    CheckConstraint(_in("role", OPERATOR_ROLES), name="role"),
)

operator_sessions: Final = Table(
    "operator_sessions",
    metadata,
    # sha256 hex of the cookie's random token: a copy of this table lets nobody sign in
    Column("token_sha256", String(SHA256_HEX_LEN), primary_key=True),
    Column("operator_id", Integer, ForeignKey("operators.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),  # absolute end; idleness is checked too
    Column("revoked_at", DateTime, nullable=True),
    Column("remote_addr", String(64), nullable=True),
    Column("user_agent", String(255), nullable=True),
)

audit_log: Final = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime, nullable=False, index=True),
    Column("actor", String(ACTOR_LEN), nullable=False, index=True),  # "operator:alice", "cli:root", "anonymous"
    Column("action", String(64), nullable=False),  # "login", "voucher.cancel", "cert.revoke", …
    Column("target", String(128), nullable=True),  # a voucher key, a bank code, a username
    Column("outcome", String(8), nullable=False),
    Column("detail", Text, nullable=False),  # canonical JSON text
    Column("remote_addr", String(64), nullable=True),
    CheckConstraint(_in("outcome", AUDIT_OUTCOMES), name="outcome"),
)

# --- reconciliation (issue 6; migration 0004) --------------------------------------------------------------------

#: Run states: RUNNING (being written; a failed run rolls back, so it is never seen) and DONE.
RECON_RUN_STATES: Final = ("RUNNING", "DONE")
#: Break states: OPEN until cleared by a later statement, found again by a later run, or resolved.
RECON_BREAK_STATES: Final = ("OPEN", "CLOSED")
#: Resolution states of a break: PROPOSED (awaiting a second operator), APPROVED (applied), REJECTED (by the
#: second operator; the break stays open), RESOLVED (applied at once: a resolution that changes no voucher).
RECON_RESOLUTION_STATES: Final = ("PROPOSED", "APPROVED", "REJECTED", "RESOLVED")

recon_runs: Final = Table(
    "recon_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("check_date", Date, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    Column("source", Text, nullable=False),  # the statement's format and file (RunResult.source)
    Column("status", String(10), nullable=False),
    Column("ledger_count", Integer, nullable=False, default=0, server_default=text("0")),
    Column("ledger_fen", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("statement_count", Integer, nullable=False, default=0, server_default=text("0")),
    Column("statement_fen", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("declared_count", Integer, nullable=True),
    Column("declared_fen", BigInteger, nullable=True),
    Column("matched", Integer, nullable=False, default=0, server_default=text("0")),
    Column("matched_by_serial", Integer, nullable=False, default=0, server_default=text("0")),
    Column("carried_in", Integer, nullable=False, default=0, server_default=text("0")),
    Column("break_count", Integer, nullable=False, default=0, server_default=text("0")),
    Column("counts", Text, nullable=False),  # JSON {break class: n} for every class
    Column("result_msg_id", String(MSG_ID_LEN), nullable=True),  # the 2507 sent to the bank (migration 0005)
    Column("result_sent_at", DateTime, nullable=True),
    UniqueConstraint("bank_code", "check_date"),  # re-running a date replaces its run
    CheckConstraint(_in("status", RECON_RUN_STATES), name="status"),
)

recon_breaks: Final = Table(
    "recon_breaks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("recon_runs.id"), nullable=False, index=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("check_date", Date, nullable=False),
    Column("break_class", String(20), nullable=False),
    Column("break_key", String(64), nullable=False),  # Break.key: "5201-…", a serial, or the summary's scope
    Column("vt_code", String(4), nullable=False),
    Column("voucher_no", String(42), nullable=False),
    Column("serial", String(42), nullable=False),  # the bank serial XAgentBusinessNo ("" when none)
    Column("ledger_side", Text, nullable=True),  # JSON of the ledger's values, or NULL
    Column("bank_side", Text, nullable=True),  # JSON of the statement's values, or NULL
    Column("detail", Text, nullable=False),
    Column("scope", String(64), nullable=False, default="", server_default=text("''")),
    Column("declared", Text, nullable=True),  # JSON {"count", "amount_fen"} of a summary mismatch
    Column("computed", Text, nullable=True),
    Column("difference_fen", BigInteger, nullable=False),
    Column("opened_on", Date, nullable=False),  # the check date it was first found on (age: from here)
    Column("closed_on", Date, nullable=True),
    Column("closed_reason", String(32), nullable=True),  # "cleared", "found again", …
    Column("state", String(6), nullable=False),
    # The resolution workflow (migration 0005): who works on it, and the resolution proposed and decided.
    Column("assigned_to", String(ACTOR_LEN), nullable=True),
    Column("resolution", String(32), nullable=True),  # the reason code of the resolution (proposed or applied)
    Column("resolution_note", Text, nullable=True),
    Column("resolution_state", String(10), nullable=True),  # NULL, or one of RECON_RESOLUTION_STATES
    Column("proposed_by", String(ACTOR_LEN), nullable=True),
    Column("proposed_at", DateTime, nullable=True),
    Column("decided_by", String(ACTOR_LEN), nullable=True),  # the second operator (approved or rejected)
    Column("decided_at", DateTime, nullable=True),
    CheckConstraint(_in("state", RECON_BREAK_STATES), name="state"),
    CheckConstraint(_in("resolution_state", RECON_RESOLUTION_STATES), name="resolution_state"),
    Index(None, "bank_code", "state", "check_date"),
)

#: Everything done to a break by people (assign, comment, propose, approve, reject, resolve), append-only. Keyed
#: by the break's identity as well as its row, so that a re-run of a date (which replaces its breaks) keeps it.
recon_break_events: Final = Table(
    "recon_break_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("break_id", Integer, nullable=True, index=True),  # the current row of the break (re-pointed on re-run)
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("check_date", Date, nullable=False),  # the check date the break was first found on (opened_on)
    Column("break_class", String(20), nullable=False),
    Column("break_key", String(64), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("actor", String(ACTOR_LEN), nullable=False),
    Column("event", String(16), nullable=False),  # assigned, commented, proposed, approved, rejected, resolved …
    Column("detail", Text, nullable=False),  # canonical JSON text
)

#: The 4006 pages received over the link, per bank and check date, until the statement is complete.
recon_pages: Final = Table(
    "recon_pages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("check_date", Date, nullable=False),
    Column("cur_pack_no", Integer, nullable=False),
    Column("child_pack_num", Integer, nullable=False),
    Column("all_num", Integer, nullable=False),
    Column("all_amt_fen", BigInteger, nullable=False),
    Column("msg_id", String(MSG_ID_LEN), nullable=False),
    Column("document", Text, nullable=False),  # the page as JSON (protocols.jsonform)
    Column("received_at", DateTime, nullable=False),
    UniqueConstraint("bank_code", "check_date", "cur_pack_no"),
)

#: Statement requests (4005) sent over the link and what became of them.
RECON_REQUEST_STATES: Final = ("REQUESTED", "RECEIVING", "COMPLETE", "RECONCILED", "FAILED")

recon_requests: Final = Table(
    "recon_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bank_code", String(BANK_CODE_LEN), nullable=False),
    Column("check_date", Date, nullable=False),
    Column("msg_id", String(MSG_ID_LEN), nullable=False, unique=True),  # the 4005's MsgId
    Column("requested_by", String(ACTOR_LEN), nullable=False),
    Column("requested_at", DateTime, nullable=False),
    Column("state", String(10), nullable=False),
    Column("run_id", Integer, nullable=True),
    Column("result_msg_id", String(MSG_ID_LEN), nullable=True),  # the 2507's MsgId
    Column("updated_at", DateTime, nullable=False),
    Column("error", Text, nullable=True),
    CheckConstraint(_in("state", RECON_REQUEST_STATES), name="state"),
    Index(None, "bank_code", "check_date"),
)

#: The nightly run's claims: one row per bank and check date, taken by exactly one gateway process.
recon_schedule: Final = Table(
    "recon_schedule",
    metadata,
    Column("bank_code", String(BANK_CODE_LEN), primary_key=True),
    Column("check_date", Date, primary_key=True),
    Column("claimed_by", String(64), nullable=False),  # the node/process that took it
    Column("claimed_at", DateTime, nullable=False),
    Column("lease_until", DateTime, nullable=False),  # another process may take it over after this
    Column("attempts", Integer, nullable=False, default=1, server_default=text("1")),
    Column("finished_at", DateTime, nullable=True),
    Column("outcome", String(16), nullable=True),  # DONE, FAILED …
    Column("detail", Text, nullable=True),
)

#: Matched vouchers per run: reconciliation is recorded on this link, not as a voucher state.
recon_matches: Final = Table(
    "recon_matches",
    metadata,
    Column("run_id", Integer, ForeignKey("recon_runs.id"), primary_key=True),
    Column("voucher_id", Integer, ForeignKey("vouchers.id"), primary_key=True, index=True),
)

#: Every table holding data, parents before children (tests empty them in reverse).
ALL_TABLES: Final = (
    vouchers,
    voucher_history,
    outbox,
    inbound,
    archive,
    quotas,
    quota_notices,
    meta,
    card_spending,
    card_events,
    operators,
    operator_sessions,
    audit_log,
    recon_runs,
    recon_breaks,
    recon_matches,
    recon_break_events,
    recon_pages,
    recon_requests,
    recon_schedule,
)
