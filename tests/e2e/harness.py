"""The end-to-end harness: a reactor thread, real instances, the gateway in-process or as `tgw run`, banks.

Everything runs over real mutual TLS on 127.0.0.1 against an instance created by the real `tgw init`.
The pieces (the fixtures in `tests/e2e/conftest.py` put them together):

- :class:`ReactorDriver`: drives the suite's shared reactor thread (`tests/reactor_thread.py`, the
  `reactor_thread` fixture) from the test thread: :meth:`ReactorDriver.call` (`blockingCallFromThread` with a
  timeout) and :meth:`ReactorDriver.until` (a `LoopingCall` on the reactor, nudged by event listeners; never
  a sleep). A wait that expires fails with what it waited for and the current state.
- :class:`Instance`: a fresh instance directory from `tgw init` (`--bank-port 0 --web-port 0`) on SQLite or a
  PostgreSQL database of its own; :meth:`Instance.tune` edits `gateway.toml` (short deadlines instead of
  sleeps), :meth:`Instance.fix_ports` pins free ports for restarts.
- :class:`GatewayProcess`: `tgw run --config …` in a subprocess (ready when it logs that it listens; ports
  from `DIR/run.json`), stopped by SIGTERM or killed (:meth:`GatewayProcess.kill`, for crash tests).
- :class:`RawBank`: a blocking TLS client holding a bank's certificate that sends arbitrary bytes, frames or
  signed messages and reads the gateway's replies, verified with the gateway's pinned signing certificate.
- :class:`E2E`: one test's world: start the gateway in-process, simulated banks (`simulators.bank`), raw
  clients, submit, read the store, wait for voucher states; everything it started is stopped at teardown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from twisted.internet import defer, threads
from twisted.internet.task import LoopingCall

from banks.standard import STANDARD_DIALECT
from certs.pki import load_certificate, load_private_key
from gateway import app, cli
from gateway import config as configuration
from gateway.dbthread import in_transaction
from gateway.payments import queries, service
from gateway.store import repo
from gateway.store.db import create_engine_for
from gateway.store.tables import archive, inbound
from protocols import samples
from protocols.framing import STANDARD, encode_frame
from protocols.messages import (
    Head,
    Message,
    Payload,
    QuotaNotice,
    Receipt,
    Reply,
    ReturnNotice,
    SignOn,
    SignOnReply,
    Voucher,
    VoucherKey,
)
from protocols.signature import Signer, Verifier
from simulators.bank import BankSetup, SimulatedBank
from simulators.rules import FaultProfile, RuleSet

#: The overall limit of any one wait; generous, because the machine may be busy.
WAIT_S: Final = 30.0
#: How often a wait re-checks its condition on the reactor (besides being nudged by events).
POLL_S: Final = 0.05
CST: Final = timedelta(hours=8)
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A wait on the reactor expired; the message says what was awaited and how things stood."""


class ReactorDriver:
    """Drives the shared running reactor (`tests/reactor_thread.py`) from the test thread: calls and waits,
    each with a timeout that fails the test saying what was awaited."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float = WAIT_S, **kwargs: Any) -> Any:
        """Run `fn` on the reactor thread; wait for its result (a Deferred's too), at most `timeout_s`."""

        def inside() -> defer.Deferred[Any]:
            d = defer.maybeDeferred(fn, *args, **kwargs)
            return d.addTimeout(timeout_s, self.reactor)

        try:
            return threads.blockingCallFromThread(self.reactor, inside)
        except defer.TimeoutError:
            raise WaitTimeout(f"{getattr(fn, '__qualname__', fn)} did not finish within {timeout_s:g} s") from None

    def until(
        self,
        check: Callable[[], Any],
        what: str,
        *,
        timeout_s: float = WAIT_S,
        listeners: Iterable[list[Callable[[str, dict[str, Any]], None]]] = (),
        describe: Callable[[], str] | None = None,
    ) -> Any:
        """Wait until `check()` (run on the reactor; it may return a Deferred) gives neither None nor False.

        The condition is checked at once, every :data:`POLL_S` seconds, and whenever an event reaches one of
        `listeners` (a hub's or a simulated bank's listener list). Returns the value that satisfied it.

        Raises:
            WaitTimeout: it did not hold within `timeout_s`; the message names `what` and, if given,
                `describe()` (called on the test thread) tells how things stood.
        """
        listener_lists = list(listeners)

        def start() -> defer.Deferred[Any]:
            done: defer.Deferred[Any] = defer.Deferred()
            busy = [False, False]  # a check is running; another one was asked for meanwhile

            def attempt(*_: Any) -> None:
                if done.called:
                    return
                if busy[0]:
                    busy[1] = True
                    return
                busy[0] = True
                d = defer.maybeDeferred(check)

                def got(value: Any) -> None:
                    busy[0] = False
                    if done.called:
                        return
                    if value is not None and value is not False:
                        done.callback(value)
                    elif busy[1]:
                        busy[1] = False
                        attempt()

                def failed(failure: Any) -> None:
                    busy[0] = False
                    if not done.called:
                        done.errback(failure)

                d.addCallbacks(got, failed)

            loop = LoopingCall(attempt)
            loop.clock = self.reactor
            loop.start(POLL_S, now=True)
            for listeners_list in listener_lists:
                listeners_list.append(attempt)

            def expire() -> None:
                if not done.called:
                    done.errback(WaitTimeout(f"{what}: not within {timeout_s:g} s"))

            timer = self.reactor.callLater(timeout_s, expire)

            def cleanup(result: Any) -> Any:
                if loop.running:
                    loop.stop()
                if timer.active():
                    timer.cancel()
                for listeners_list in listener_lists:
                    with contextlib.suppress(ValueError):
                        listeners_list.remove(attempt)
                return result

            return done.addBoth(cleanup)

        try:
            return self.call(start, timeout_s=timeout_s + 10)
        except WaitTimeout as exc:
            state = ""
            if describe is not None:
                try:
                    state = describe()
                except Exception as describe_error:  # the description must not hide the timeout
                    state = f"(could not describe the state: {describe_error!r})"
            raise WaitTimeout(f"timed out waiting for {what} ({exc}).\n{state}") from None


def now_cst() -> datetime:
    """The wall clock in China Standard Time, naive (as `SendTime` carries it)."""
    return datetime.now(UTC).replace(tzinfo=None) + CST


def today_cst() -> date:
    return now_cst().date()


# --- instances -----------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


@dataclasses.dataclass
class Instance:
    """An instance directory made by the real `tgw init`, on one backend."""

    directory: Path
    backend: str
    banks: tuple[str, ...]
    database_url: str | None = None  # None: the SQLite default in the directory

    @classmethod
    def create(
        cls, directory: Path, *, backend: str, banks: Sequence[str] = ("ICBC",), database_url: str | None = None
    ) -> Instance:
        argv = ["init", str(directory), "--bank-port", "0", "--web-port", "0"]
        for code in banks:
            argv += ["--bank", code]
        if database_url is not None:
            argv += ["--database", database_url]
        exit_code = cli.main(argv)
        assert exit_code == 0, f"tgw {' '.join(argv)} exited {exit_code}"
        return cls(directory, backend, tuple(banks), database_url)

    @property
    def config_path(self) -> Path:
        return self.directory / "gateway.toml"

    def config(self) -> configuration.Config:
        return configuration.load(self.config_path)

    def tune(self, section: str, **values: Any) -> None:
        """Set `key = value` lines of a `[section]` of gateway.toml (replacing, adding, or adding the section)."""
        lines = self.config_path.read_text(encoding="utf-8").splitlines()
        header = f"[{section}]"
        if header not in lines:
            lines += ["", header]
        start = lines.index(header) + 1
        end = next((n for n in range(start, len(lines)) if lines[n].startswith("[")), len(lines))
        pending = dict(values)
        for n in range(start, end):
            key = lines[n].split("=", 1)[0].strip()
            if "=" in lines[n] and key in pending:
                lines[n] = f"{key} = {_toml_value(pending.pop(key))}"
        lines[start:start] = [f"{key} = {_toml_value(value)}" for key, value in pending.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.config()  # a wrong setting fails here, naming itself

    def fix_ports(self) -> tuple[int, int]:
        """Pin the bank and web ports to free ones (a restarted gateway listens where banks reconnect)."""
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.tune("listen", bank_port=ports[0], web_port=ports[1])
        return ports[0], ports[1]

    # --- the dev PKI ----------------------------------------------------------------------------------------

    def bank_cert(self, code: str) -> Path:
        return self.directory / "pki" / "banks" / code / "cert.pem"

    def bank_key(self, code: str) -> Path:
        return self.directory / "pki" / "banks" / code / "key.pem"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "pki" / "ca.pem"

    @property
    def gateway_signing_cert(self) -> Path:
        return self.directory / "pki" / "gateway-signing-cert.pem"

    def gateway_verifier(self) -> Verifier:
        """Verifies what the gateway signs, with its pinned signing certificate."""
        return Verifier(load_certificate(self.gateway_signing_cert))

    def bank_signer(self, code: str) -> Signer:
        return Signer(load_private_key(self.bank_key(code)), load_certificate(self.bank_cert(code)))  # type: ignore[arg-type]

    def read_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store function in one transaction on an engine of the test's own (the gateway may be stopped)."""
        engine = create_engine_for(self.config().database_url)
        try:
            return in_transaction(engine, fn, *args)
        finally:
            engine.dispose()


# --- the gateway as an operator runs it ------------------------------------------------------------------------


def tgw_command() -> list[str]:
    """The installed `tgw` entry point of this virtual environment."""
    script = Path(sys.executable).with_name("tgw")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def run_tgw(*args: str | Path, timeout_s: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    """Run one `tgw` command to completion (stdout and stderr captured as text)."""
    return subprocess.run(
        [*tgw_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout_s, check=False
    )


class GatewayProcess:
    """`tgw run --config DIR/gateway.toml` in a subprocess; its output is collected by a reader thread."""

    READY: Final = "listening for banks"

    def __init__(self, instance: Instance, *, log_level: str = "INFO") -> None:
        self.instance = instance
        self.proc = subprocess.Popen(
            [*tgw_command(), "run", "--config", str(instance.config_path), "--log-level", log_level],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=instance.directory,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"tgw-run-{self.proc.pid}", daemon=True)
        self._reader.start()
        self.run_info: dict[str, Any] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Block until the gateway says it listens (its output, read as it comes); return DIR/run.json."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
        while True:
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            try:
                line = self._queue.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise WaitTimeout(f"tgw run did not start within {timeout_s:g} s:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"tgw run exited {self.proc.wait()} before listening:\n{self.output}")
            if self.READY in line:
                break
        self.run_info = json.loads((self.instance.directory / "run.json").read_text(encoding="utf-8"))
        assert self.run_info["pid"] == self.proc.pid, self.run_info
        return self.run_info

    @property
    def bank_address(self) -> tuple[str, int]:
        host, port = self.run_info["bank"]
        return host, port

    @property
    def web_address(self) -> tuple[str, int]:
        host, port = self.run_info["web"]
        return host, port

    def terminate(self, timeout_s: float = WAIT_S) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> int:
        """SIGKILL (`kill -9`): no chance to clean up."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(WAIT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._reader.join(WAIT_S)


# --- a raw bank client -----------------------------------------------------------------------------------------


class Closed(AssertionError):
    """The gateway closed the connection while the test expected a frame."""


class RawBank:
    """A blocking TLS client with a bank's certificate: arbitrary bytes out, verified replies in.

    Args:
        address: the gateway's bank listener.
        code: the bank code written into headers (and signed-on as).
        node: the gateway's node code (`Des`).
        ca_cert, cert, key: the bank CA and the TLS client certificate and key to present.
        signer: signs the messages this client builds (by default with `key`/`cert`).
        verifier: checks what the gateway sends (its pinned signing certificate).
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        code: str,
        node: str,
        ca_cert: Path,
        cert: Path,
        key: Path,
        signer: Signer,
        verifier: Verifier,
    ) -> None:
        self.code = code
        self.node = node
        self.signer = signer
        self.verifier = verifier
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=str(ca_cert))
        context.load_cert_chain(str(cert), str(key))
        raw = socket.create_connection(address, timeout=WAIT_S)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self._buffer = b""
        self.closed = False
        #: Gateway-initiated messages read while waiting for something else, in arrival order.
        self.inbox: list[Message] = []

    # --- bytes ----------------------------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_body(self, body: bytes) -> None:
        self.send_bytes(encode_frame(STANDARD, body))

    def _fill(self, want: int, timeout_s: float) -> bool:
        """Read until `want` bytes are buffered; False at the end of the stream."""
        self.sock.settimeout(timeout_s)
        while len(self._buffer) < want:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise WaitTimeout(f"no frame from the gateway within {timeout_s:g} s") from None
            except (ssl.SSLError, ConnectionError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                return False
            self._buffer += chunk
        return True

    def read_frame(self, timeout_s: float = WAIT_S) -> bytes | None:
        """The next frame body, or None when the gateway has closed the connection."""
        if not self._fill(8, timeout_s):
            return None
        length = int(self._buffer[:8])
        if not self._fill(8 + length, timeout_s):
            return None
        body, self._buffer = self._buffer[8 : 8 + length], self._buffer[8 + length :]
        return body

    def read_message(self, timeout_s: float = WAIT_S) -> Message:
        """The next message, verified with the gateway's pinned certificate and decoded."""
        frame = self.read_frame(timeout_s)
        if frame is None:
            raise Closed("the gateway closed the connection")
        return STANDARD_DIALECT.decode(frame, self.verifier).message

    def wait_closed(self, timeout_s: float = WAIT_S) -> list[Message]:
        """Read until the gateway closes the connection; returns what came before the end."""
        seen = []
        while (frame := self.read_frame(timeout_s)) is not None:
            seen.append(STANDARD_DIALECT.decode(frame, self.verifier).message)
        return seen

    # --- messages -------------------------------------------------------------------------------------------

    @staticmethod
    def new_msg_id() -> str:
        return f"RAW{secrets.token_hex(8).upper()}"

    def head(
        self,
        payload: Payload,
        msg_id: str,
        *,
        msg_ref: str | None = None,
        src: str | None = None,
        des: str | None = None,
    ) -> Head:
        now = now_cst()
        return Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_id if msg_ref is None else msg_ref,
            src=self.code if src is None else src,
            des=self.node if des is None else des,
            work_date=now.date(),
            send_time=now.replace(microsecond=0),
        )

    def build(self, payload: Payload, msg_id: str | None = None, **head: Any) -> tuple[str, bytes]:
        """A signed document (frame body) of `payload` from this bank; returns its MsgId and bytes."""
        msg_id = msg_id or self.new_msg_id()
        return msg_id, STANDARD_DIALECT.encode(Message(self.head(payload, msg_id, **head), payload), self.signer)

    def send(self, payload: Payload, msg_id: str | None = None, **head: Any) -> str:
        msg_id, body = self.build(payload, msg_id, **head)
        self.send_body(body)
        return msg_id

    def reply_to(self, msg_ref: str, timeout_s: float = WAIT_S) -> Message:
        """Read until the gateway's reply whose `MsgRef` is `msg_ref`; other messages go to :attr:`inbox`."""
        while True:
            message = self.read_message(timeout_s)
            if message.body.IS_REPLY and message.head.msg_ref == msg_ref:
                return message
            self.inbox.append(message)

    def request(self, payload: Payload | bytes, msg_id: str | None = None, **head: Any) -> Message:
        """Send a message (or a ready document with `msg_id` its MsgId) and return the gateway's reply."""
        if isinstance(payload, bytes):
            assert msg_id is not None, "give the MsgId a ready document carries"
            self.send_body(payload)
        else:
            msg_id = self.send(payload, msg_id, **head)
        return self.reply_to(msg_id)

    def expect(self, msg_no: str, timeout_s: float = WAIT_S) -> Message:
        """The next gateway-initiated message of type `msg_no` (from :attr:`inbox` first)."""
        for n, message in enumerate(self.inbox):
            if message.head.msg_no == msg_no and not message.body.IS_REPLY:
                return self.inbox.pop(n)
        while True:
            message = self.read_message(timeout_s)
            if message.head.msg_no == msg_no and not message.body.IS_REPLY:
                return message
            self.inbox.append(message)

    def sign_on(self) -> Message:
        reply = self.request(SignOn(bank_code=self.code, last_work_date=today_cst() - timedelta(days=1)))
        assert isinstance(reply.body, SignOnReply) and reply.body.result == 90000, reply
        return reply

    def ack(self, message: Message, result: int = 90000, add_word: str = "") -> str:
        """Answer a gateway-initiated message with a 9120."""
        reply = Reply(ori_msg_no=message.head.msg_no, result=result, add_word=add_word)
        return self.send(reply, msg_ref=message.head.msg_id)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# --- messages the tests send -----------------------------------------------------------------------------------


def direct_voucher(
    voucher_no: str = "5201450100000123", amounts_fen: tuple[int, ...] = (10_000_000, 2_500_000)
) -> Voucher:
    """A 5201 (the protocol sample, with its own number)."""
    return samples.direct_voucher(voucher_no, amounts_fen)


def authorized_voucher(voucher_no: str = "8202450100000045", amount_fen: int = 3_860_050) -> Voucher:
    """An 8202 against agency 102003's quota (granted by :func:`quota_notice`)."""
    v = samples.authorized_voucher()
    detail = dataclasses.replace(v.details[0], pay_amt_fen=amount_fen)
    return dataclasses.replace(v, voucher_no=voucher_no, pay_amt_fen=amount_fen, details=(detail,))


def quota_notice(voucher_no: str = "5106450100000012") -> QuotaNotice:
    """A 5106 granting agency 102003 500,000.00 yuan and agency 101001 1,200,000.00 yuan."""
    return dataclasses.replace(samples.quota_notice(), voucher_no=voucher_no)


def receipt_for(voucher: Voucher, *, paid: bool = True, serial: str | None = None, **changes: Any) -> Receipt:
    """The receipt a bank sends for `voucher`: paid in full, or refused."""
    receipt = Receipt(
        adm_div_code=voucher.adm_div_code,
        st_year=voucher.st_year,
        vt_code=voucher.vt_code,
        voucher_no=voucher.voucher_no,
        pay_amt_fen=voucher.pay_amt_fen,
        x_pay_date=today_cst(),
        x_agent_business_no=serial or f"ICBC{today_cst():%Y%m%d}{secrets.randbelow(10**8):08d}",
        x_pay_amt_fen=voucher.pay_amt_fen if paid else 0,
        x_payee_acct_no=voucher.payee_acct_no,
        x_payee_acct_name=voucher.payee_acct_name,
        x_result="S" if paid else "F",
        x_add_word=None if paid else "收款账户已冻结",
    )
    return dataclasses.replace(receipt, **changes)


def return_for(voucher: Voucher, amount_fen: int, notice_no: str, serial: str | None = None) -> ReturnNotice:
    """A 2252 bringing `amount_fen` of `voucher`'s payment back."""
    return ReturnNotice(
        adm_div_code=voucher.adm_div_code,
        st_year=voucher.st_year,
        vt_code="2252",
        voucher_no=notice_no,
        ori_vt_code=voucher.vt_code,
        original_voucher_no=voucher.voucher_no,
        pay_amt_fen=-amount_fen,
        x_pay_date=today_cst(),
        x_agent_business_no=serial or f"ICBC{today_cst():%Y%m%d}{secrets.randbelow(10**8):08d}",
        remark="收款人账户已销户",
    )


# --- store reads the tests make ---------------------------------------------------------------------------------


def archive_rows(conn: Connection, **where: Any) -> list[dict[str, Any]]:
    """Archived messages (oldest first), filtered by column values, e.g. `direction="out", msg_no="5201"`."""
    query = select(archive).order_by(archive.c.id)
    for column, value in where.items():
        query = query.where(archive.c[column] == value)
    return [dict(row) for row in conn.execute(query).mappings()]


def inbound_rows(conn: Connection, msg_id: str | None = None) -> list[dict[str, Any]]:
    query = select(inbound).order_by(inbound.c.id)
    if msg_id is not None:
        query = query.where(inbound.c.msg_id == msg_id)
    return [dict(row) for row in conn.execute(query).mappings()]


def voucher_with_chain(conn: Connection, key: VoucherKey) -> dict[str, Any] | None:
    """The voucher as the API shows it, plus whether its hash-chained history verifies."""
    found = queries.get_voucher(conn, key)
    if found is None:
        return None
    record = repo.get_voucher_by_key(conn, key)
    assert record is not None
    return {**found, "id": record.id, "chain_ok": repo.verify_chain(conn, record.id)}


def describe_store(conn: Connection) -> str:
    """Every voucher with its state and events, for a timed-out wait's message."""
    lines = []
    for v in queries.list_vouchers(conn, queries.VoucherFilter(limit=1000))["vouchers"]:
        found = queries.get_voucher(conn, VoucherKey.parse(v["key"]))
        events = " → ".join(f"{t['event']}:{t['to']}" for t in (found or {}).get("timeline", []))
        lines.append(f"  {v['key']} {v['state']} ({events})")
    return "vouchers:\n" + ("\n".join(lines) or "  none")


# --- one test's world ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Gateway:
    """A gateway started in-process on the reactor thread."""

    running: app.Running
    config: configuration.Config

    @property
    def hub(self) -> Any:
        return self.running.hub

    @property
    def bank_address(self) -> tuple[str, int]:
        return self.running.bank_address


class E2E:
    """One test's world on one instance; :meth:`close` stops whatever it started, newest first."""

    def __init__(self, rt: ReactorDriver, instance: Instance) -> None:
        self.rt = rt
        self.instance = instance
        self.gateway: Gateway | None = None
        self.banks: dict[str, SimulatedBank] = {}
        #: Every (kind, data) the gateway emitted, in order (on the reactor thread).
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._cleanups: list[Callable[[], None]] = []
        self._engine: Engine | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self, **settings: dict[str, Any]) -> Gateway:
        """Tune gateway.toml (`payments={...}`, `session={...}`) and start the gateway in-process."""
        for section, values in settings.items():
            self.instance.tune(section, **values)
        cfg = self.instance.config()
        running = self.rt.call(app.start, cfg, self.rt.reactor)
        self.gateway = Gateway(running, cfg)
        self.rt.call(running.hub.listeners.append, lambda kind, data: self.events.append((kind, data)))
        self._cleanups.append(lambda: self.stop_gateway())
        return self.gateway

    def run_process(self, **settings: dict[str, Any]) -> GatewayProcess:
        """Tune gateway.toml and start `tgw run` in a subprocess; returns once it listens (ports from run.json)."""
        for section, values in settings.items():
            self.instance.tune(section, **values)
        process = GatewayProcess(self.instance)
        self._cleanups.append(process.close)
        process.wait_ready()
        return process

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            gateway, self.gateway = self.gateway, None
            self.rt.call(gateway.running.stop)

    @property
    def hub(self) -> Any:
        assert self.gateway is not None, "start the gateway first (e2e.start())"
        return self.gateway.hub

    def close(self) -> None:
        errors = []
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as exc:  # keep stopping the rest
                errors.append(exc)
        if errors:
            raise errors[0]

    # --- banks ----------------------------------------------------------------------------------------------

    def bank_setup(self, code: str = "ICBC", address: tuple[str, int] | None = None) -> BankSetup:
        host, port = address or (self.gateway.bank_address if self.gateway else ("", 0))
        return BankSetup(
            code=code,
            host=host,
            port=port,
            node=self.instance.config().node,
            ca_cert=self.instance.ca_cert,
            cert=self.instance.bank_cert(code),
            key=self.instance.bank_key(code),
            gateway_signing_cert=self.instance.gateway_signing_cert,
        )

    def bank(
        self,
        code: str = "ICBC",
        *,
        rules: RuleSet | None = None,
        seed: int = 0,
        faults: FaultProfile | None = None,
        address: tuple[str, int] | None = None,
        wait: bool = True,
    ) -> SimulatedBank:
        """Start a simulated bank (reconnecting quickly) and, by default, wait until it has signed on."""
        bank = SimulatedBank(
            self.bank_setup(code, address),
            self.rt.reactor,
            rules=rules,
            seed=seed,
            faults=faults,
            reconnect_delay_s=0.1,
            reconnect_delay_max_s=1,  # back within a second of a restarted gateway listening again
        )
        self.banks[code] = bank
        self.rt.call(bank.start)
        self._cleanups.append(lambda: self.rt.call(bank.stop))
        if wait:
            self.wait_signed_on(bank)
        return bank

    def wait_signed_on(self, bank: SimulatedBank) -> None:
        self.rt.until(
            lambda: bank.connection is not None and bank.connection.signed_on,
            f"the simulated {bank.setup.code} to sign on",
            listeners=[bank.listeners],
        )

    def raw(
        self,
        code: str = "ICBC",
        *,
        cert: Path | None = None,
        key: Path | None = None,
        signer: Signer | None = None,
        sign_on: bool = True,
        address: tuple[str, int] | None = None,
    ) -> RawBank:
        """A raw client with `code`'s certificate (or the one given), signed on unless told otherwise."""
        client = RawBank(
            address or (self.gateway.bank_address if self.gateway else ("127.0.0.1", 0)),
            code=code,
            node=self.instance.config().node,
            ca_cert=self.instance.ca_cert,
            cert=cert or self.instance.bank_cert(code),
            key=key or self.instance.bank_key(code),
            signer=signer or self.instance.bank_signer(code),
            verifier=self.instance.gateway_verifier(),
        )
        self._cleanups.append(client.close)
        if sign_on:
            client.sign_on()
        return client

    # --- the finance side -----------------------------------------------------------------------------------

    def submit(self, *vouchers: Voucher, bank: str = "ICBC") -> list[VoucherKey]:
        """Submit vouchers as the finance side does (one transaction) and kick the dispatcher."""
        hub = self.hub
        accepted = self.rt.call(
            hub.run_in_store,
            service.submit,
            [(bank, v) for v in vouchers],
            "test:e2e",
            hub.now(),
            hub.config.node,
            list(hub.config.banks),
        )
        self.rt.call(hub.kick, bank)
        return [a.key for a in accepted]

    def submit_quota(self, notice: QuotaNotice, bank: str = "ICBC") -> str:
        """Grant quota with a 5106 (forwarded to the bank); returns its MsgId."""
        hub = self.hub
        msg_id = self.rt.call(
            hub.run_in_store, service.submit_quota_notice, bank, notice, "test:e2e", hub.now(), hub.config.node
        )
        self.rt.call(hub.kick, bank)
        return str(msg_id)

    # --- reading and waiting --------------------------------------------------------------------------------

    def store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store function on the gateway's store thread, or without one (a `tgw run` process, a stopped
        gateway) on an engine of the test's own."""
        result: T = self.rt.call(self._in_store, fn, *args)
        return result

    def _in_store(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """On the reactor: run `fn(conn, *args)` in one transaction, off the reactor thread."""
        if self.gateway is not None:
            return self.hub.run_in_store(fn, *args)  # type: ignore[no-any-return]
        if self._engine is None:
            self._engine = create_engine_for(self.instance.config().database_url)
            engine = self._engine
            self._cleanups.append(engine.dispose)
        return threads.deferToThread(in_transaction, self._engine, fn, *args)

    def voucher(self, key: VoucherKey) -> dict[str, Any]:
        found = self.store(voucher_with_chain, key)
        assert found is not None, f"no voucher {key}"
        return found

    def archive(self, **where: Any) -> list[dict[str, Any]]:
        return self.store(lambda conn: archive_rows(conn, **where))

    def describe(self) -> str:
        text = self.store(describe_store)
        for code, bank in self.banks.items():
            text += f"\nsimulated {code} (seed {bank.seed}): {bank.stats}, unacked {len(bank.unacked)}"
        return text

    def until(self, check: Callable[[], Any], what: str, *, timeout_s: float = WAIT_S) -> Any:
        """Wait (on the reactor, nudged by the gateway's and banks' events) until `check()` holds."""
        listeners = [b.listeners for b in self.banks.values()]
        if self.gateway is not None:
            listeners.append(self.hub.listeners)
        return self.rt.until(check, what, timeout_s=timeout_s, listeners=listeners, describe=self.describe)

    def until_store(self, fn: Callable[..., Any], *args: Any, what: str, timeout_s: float = WAIT_S) -> Any:
        """Wait until the store function `fn(conn, *args)` returns something other than None or False."""
        return self.until(lambda: self._in_store(fn, *args), what, timeout_s=timeout_s)

    def wait_state(self, key: VoucherKey, *states: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Wait until the voucher is in one of `states`; returns it (with `chain_ok`)."""

        def check(conn: Connection) -> dict[str, Any] | None:
            found = voucher_with_chain(conn, key)
            return found if found is not None and found["state"] in states else None

        result: dict[str, Any] = self.until_store(check, what=f"{key} to be {' or '.join(states)}", timeout_s=timeout_s)
        return result

    def wait_bank(self, bank: SimulatedBank, check: Callable[[SimulatedBank], Any], what: str) -> Any:
        """Wait for a condition on a simulated bank (checked on the reactor thread)."""
        return self.until(lambda: check(bank), what)


def events_of(events: Iterable[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [data for k, data in events if k == kind]


# --- the gateway's ledger against a simulated bank's (test_faults.py, test_crash.py) --------------------------
#
# Added for the seeded fault-injection run and the kill -9 crash test: a snapshot of every voucher the gateway
# holds (state, bank serial, amounts, whether its history chain verifies, its outbox rows still open), a store
# condition "everything settled", and the comparison with the simulated bank's ledger, which is its truth.

#: Voucher states nothing moves a voucher out of (but a 2252, which these runs do not send).
FINAL_STATES: Final = frozenset({"PAID", "FAILED", "REJECTED", "RETURNED", "CANCELLED"})
#: Outbox states of a message still to be sent or answered.
OPEN_OUTBOX_STATES: Final = ("PENDING", "SENT")


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One voucher as the gateway's store holds it, with what the comparison needs."""

    key: str
    vt_code: str
    state: str
    amount_fen: int
    serial: str | None
    pay_date: date | None
    paid_fen: int | None
    chain_ok: bool
    events: tuple[str, ...]  # "event:to_state", oldest first (the timeline of a failure message)
    open_outbox: tuple[str, ...]  # "msg_no/msg_id:state" of this voucher's outbox rows still PENDING or SENT


@dataclasses.dataclass(frozen=True)
class LedgerSnapshot:
    """Every voucher of the gateway, every outbox row still open, and the quota used per agency."""

    vouchers: dict[str, LedgerEntry]
    open_outbox: tuple[str, ...]  # "msg_no/msg_id:state" of every outbox row still PENDING or SENT
    quota_used_fen: dict[str, int]  # agency code -> used_fen

    def settled(self, keys: Iterable[str]) -> bool:
        """Every one of `keys` is there and final, and no outbound message is waiting to go or be answered."""
        return not self.open_outbox and all(k in self.vouchers and self.vouchers[k].state in FINAL_STATES for k in keys)

    def timeline(self, key: str) -> str:
        entry = self.vouchers.get(key)
        return "not in the gateway" if entry is None else f"{entry.state}: {' → '.join(entry.events)}"


def ledger_snapshot(conn: Connection) -> LedgerSnapshot:
    """Read the whole ledger in one transaction (a consistent picture, also of a stopped or killed gateway)."""
    from gateway.store.tables import outbox, quotas, voucher_history, vouchers

    history: dict[int, list[str]] = {}
    for h in conn.execute(select(voucher_history).order_by(voucher_history.c.voucher_id, voucher_history.c.seq)):
        history.setdefault(h.voucher_id, []).append(f"{h.event}:{h.to_state}")
    open_rows: dict[int | None, list[str]] = {}
    for o in conn.execute(
        select(outbox).where(outbox.c.state.in_(OPEN_OUTBOX_STATES)).order_by(outbox.c.id)
    ).mappings():
        open_rows.setdefault(o["voucher_id"], []).append(f"{o['msg_no']}/{o['msg_id']}:{o['state']}")
    entries = {}
    for v in conn.execute(select(vouchers).order_by(vouchers.c.id)).mappings():
        key = str(VoucherKey(v["adm_div_code"], v["st_year"], v["vt_code"], v["voucher_no"]))
        entries[key] = LedgerEntry(
            key=key,
            vt_code=v["vt_code"],
            state=v["state"],
            amount_fen=v["amount_fen"],
            serial=v["x_agent_business_no"],
            pay_date=v["x_pay_date"],
            paid_fen=v["x_pay_amt_fen"],
            chain_ok=repo.verify_chain(conn, v["id"]),
            events=tuple(history.get(v["id"], ())),
            open_outbox=tuple(open_rows.get(v["id"], ())),
        )
    used = {q.agency_code: q.used_fen for q in conn.execute(select(quotas))}
    return LedgerSnapshot(entries, tuple(row for rows in open_rows.values() for row in rows), used)


def ledger_breaks(snapshot: LedgerSnapshot, bank: SimulatedBank, expected: dict[str, Voucher]) -> list[str]:
    """Every way the gateway's ledger and the bank's disagree, or a guarantee does not hold; empty if none.

    `expected` is every voucher the finance side had accepted (key → voucher). Checked: the gateway holds exactly
    those, each final with a history chain that verifies and no outbound message still open; the bank executed
    exactly those; per voucher PAID ⇔ the bank paid it (same serial, same date, the whole amount) and FAILED ⇔ the
    bank refused it; the bank's journal has at most one entry per voucher (nothing paid twice, nothing both paid
    and refused); the quota used is the sum of the live (PAID) 8202 amounts per agency.
    """
    problems: list[str] = []
    gateway, outcomes = snapshot.vouchers, {str(o.key): o for o in bank.ledger.outcomes()}
    for key in sorted(set(expected) - set(gateway)):
        problems.append(f"{key}: accepted, but not in the gateway (lost)")
    for key in sorted(set(gateway) - set(expected)):
        problems.append(f"{key}: in the gateway, but never accepted from the finance side")
    for key in sorted(set(outcomes) - set(gateway)):
        problems.append(f"{key}: executed by the bank, unknown to the gateway")
    for key, entry in sorted(gateway.items()):
        where = f"{key} ({snapshot.timeline(key)})"
        voucher = expected.get(key)
        if voucher is not None and entry.amount_fen != voucher.pay_amt_fen:
            problems.append(f"{where}: amount {entry.amount_fen} fen, submitted {voucher.pay_amt_fen} fen")
        if entry.state not in FINAL_STATES:
            problems.append(f"{where}: not final")
        if not entry.chain_ok:
            problems.append(f"{where}: the history chain does not verify")
        if entry.open_outbox:
            problems.append(f"{where}: outbox rows still open: {', '.join(entry.open_outbox)}")
        outcome = outcomes.get(key)
        if entry.state == "PAID":
            if outcome is None or not outcome.paid:
                problems.append(f"{where}: PAID in the gateway, bank outcome {outcome}")
            elif (entry.serial, entry.pay_date, entry.paid_fen) != (
                outcome.serial,
                outcome.pay_date,
                outcome.paid_fen,
            ) or outcome.paid_fen != entry.amount_fen:
                problems.append(
                    f"{where}: PAID as {entry.serial} on {entry.pay_date} for {entry.paid_fen} fen of "
                    f"{entry.amount_fen}, the bank paid {outcome.serial} on {outcome.pay_date} for {outcome.paid_fen}"
                )
        elif entry.state == "FAILED":
            if outcome is None or outcome.paid:
                problems.append(f"{where}: FAILED in the gateway, bank outcome {outcome}")
        elif outcome is not None:
            problems.append(f"{where}: {entry.state} in the gateway, but the bank executed it: {outcome}")
    entries_per_key: dict[str, list[str]] = {}
    for j in bank.ledger.journal:
        entries_per_key.setdefault(str(j.key), []).append(f"{j.kind.value} {j.serial} {j.amount_fen}")
    for key, lines in sorted(entries_per_key.items()):
        if len(lines) > 1:
            problems.append(f"{key}: the bank's journal has {len(lines)} entries (paid twice?): {lines}")
    live: dict[str, int] = {}
    for key, entry in gateway.items():
        voucher = expected.get(key)
        if entry.vt_code == "8202" and entry.state == "PAID" and voucher is not None:
            live[voucher.agency_code] = live.get(voucher.agency_code, 0) + entry.amount_fen
    for agency in sorted(set(live) | set(snapshot.quota_used_fen)):
        used, paid = snapshot.quota_used_fen.get(agency, 0), live.get(agency, 0)
        if used != paid:
            problems.append(f"quota of agency {agency}: {used} fen used, the live 8202 vouchers add up to {paid}")
    return problems


def _read(engine: Engine, check: Callable[[Connection], T]) -> T:
    from gateway.store.db import transaction

    with transaction(engine, read_only=True) as conn:
        return check(conn)


def until_read(e2e: E2E, check: Callable[[Connection], Any], what: str, *, timeout_s: float = WAIT_S) -> Any:
    """Wait until `check(conn)` gives neither None nor False, read the way an onlooker reads: in a read-only
    transaction on an engine of the test's own, off the reactor thread.

    Unlike :meth:`E2E.until_store` it never takes SQLite's write lock (its `BEGIN` is deferred), so polling a
    `tgw run` process's database, or the in-process gateway's, does not hold up the gateway's writers; on
    PostgreSQL it reads in REPEATABLE READ, one consistent picture per check.
    """
    from gateway.store.db import is_sqlite

    engine = create_engine_for(e2e.instance.config().database_url)
    reading = engine if is_sqlite(engine) else engine.execution_options(isolation_level="REPEATABLE READ")
    try:
        return e2e.until(lambda: threads.deferToThread(_read, reading, check), what, timeout_s=timeout_s)
    finally:
        engine.dispose()


def settled_snapshot(expected: Iterable[str]) -> Callable[[Connection], LedgerSnapshot | None]:
    """A store check: the whole ledger once every one of `expected` is final and no outbox row is open.

    Counts first (cheap), and reads the whole ledger (every history chain verified) only when they say so.
    """
    from sqlalchemy import func

    from gateway.store.tables import outbox, vouchers

    keys = frozenset(expected)

    def check(conn: Connection) -> LedgerSnapshot | None:
        count = select(func.count())
        if conn.scalar(count.select_from(outbox).where(outbox.c.state.in_(OPEN_OUTBOX_STATES))):
            return None
        if conn.scalar(count.select_from(vouchers).where(vouchers.c.state.not_in(FINAL_STATES))):
            return None
        if (conn.scalar(count.select_from(vouchers)) or 0) < len(keys):
            return None
        snapshot = ledger_snapshot(conn)
        return snapshot if snapshot.settled(keys) else None

    return check


# --- end of the section for test_faults.py and test_crash.py ----------------------------------------------------
