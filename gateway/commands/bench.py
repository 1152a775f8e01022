"""`tgw bench codec` and `tgw bench gateway`: what the protocol core and the whole gateway sustain, beside ceilings.

`tgw bench codec`: messages per second of the protocol core, beside its ceiling and a peer library.

Measured on one core, in one process, for a realistic ~2 KB voucher (PROTOCOL.md §5.1), with RSA-2048 and P-256:
- parse+validate+verify: framing body → hardened parse → signature check with the pinned key → schema, typed
  values, business rules (what the gateway does with every inbound message);
- build+sign: canonical message → tree → signed bytes (every outbound message);
- the ceiling: the bare signature operations alone (`cryptography`), on the same number of bytes;
- the peer: `signxml` verifying and signing the same documents.
Each figure is the median of several timed runs; the figures are printed and written to a JSON file.

`tgw bench gateway` (also plain `tgw bench`): see :func:`run_gateway`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol

from banks.standard import STANDARD_DIALECT
from certs.pki import KeyType, create_ca, generate_key, issue_signing_cert
from protocols import samples
from protocols.framing import FrameDecoder, encode_frame
from protocols.signature import Signer, Verifier

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmarks (measured, printed, written to a file)",
        description="Without WHAT: the gateway benchmark (`tgw bench gateway`).",
    )
    _gateway_options(parser)
    parser.set_defaults(func=run_gateway)
    bsub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=False)
    gateway = bsub.add_parser(
        "gateway",
        help="payments per second and submit→PAID latency against a simulated bank, beside their ceilings",
    )
    _gateway_options(gateway)
    gateway.set_defaults(func=run_gateway)
    from gateway.commands import bench_dialects

    bench_dialects.register(bsub)
    codec = bsub.add_parser("codec", help="protocol core: parse+validate+verify and build+sign per second")
    codec.add_argument("--runs", type=int, default=5, help="timed runs per figure (the median is reported)")
    codec.add_argument("--seconds", type=float, default=0.4, help="length of one timed run")
    codec.add_argument("--json", action="store_true", help="print the results as JSON")
    codec.add_argument("--output", type=Path, default=Path("bench-results/codec.json"), help="results file")
    codec.set_defaults(func=run_codec)
    reconcile = bsub.add_parser(
        "reconcile",
        help="reconciliation: 100 k and 1 M statement lines against the ledger, beside pandas (its own options)",
        add_help=False,
        prefix_chars="+",  # every option, --help included, goes through to reconciliation.bench
    )
    reconcile.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of reconciliation.bench")
    reconcile.set_defaults(func=run_reconcile)


def run_reconcile(args: argparse.Namespace) -> int:
    """`tgw bench reconcile …`: the reconciliation benchmark (`reconciliation.bench.main`, its own options)."""
    from reconciliation import bench as reconcile_bench

    return reconcile_bench.main(args.bench_args)


def rate(fn: Callable[[], Any], seconds: float, runs: int) -> float:
    """Median operations per second of `fn` over `runs` runs of about `seconds` each."""
    fn()  # warm up (caches, lazily compiled schemas)
    rates = []
    for _ in range(runs):
        n, start = 0, time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(10):
                fn()
            n += 10
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(n / (now - start))
    return statistics.median(rates)


def _signxml_pair(
    key: Any, cert_pem: bytes, key_type: KeyType, root: Any
) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    try:
        import signxml  # test extra: the peer implementation
        from signxml import SignatureConfiguration, XMLSigner, XMLVerifier
    except ImportError:  # pragma: no cover - signxml is installed with the test extra
        return None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    algorithm = "rsa-sha256" if key_type is KeyType.RSA else "ecdsa-sha256"
    signer = XMLSigner(
        method=signxml.methods.enveloped,
        signature_algorithm=algorithm,
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    signed = etree.tostring(signer.sign(root, key=key_pem, cert=cert_pem.decode()))
    config = SignatureConfiguration(require_x509=False)

    def verify() -> None:
        XMLVerifier().verify(signed, x509_cert=cert_pem.decode(), expect_config=config)

    def sign() -> None:
        signer.sign(root, key=key_pem, cert=cert_pem.decode())

    return verify, sign


def _measure(
    key: Any,
    signer: Signer,
    verifier: Verifier,
    message: Any,
    wire: bytes,
    seconds: float,
    runs: int,
) -> dict[str, float]:
    """Our decode and encode, and the bare signature operations on the same canonical bytes."""
    digest_input = etree.tostring(etree.fromstring(wire), method="c14n", exclusive=True)
    public = key.public_key()
    rsa_key = isinstance(key, rsa.RSAPrivateKey)

    def bare_sign() -> Any:
        if rsa_key:
            return key.sign(digest_input, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(digest_input, ec.ECDSA(hashes.SHA256()))

    signature_value = bare_sign()

    def bare_verify() -> Any:
        if rsa_key:
            return public.verify(signature_value, digest_input, padding.PKCS1v15(), hashes.SHA256())
        return public.verify(signature_value, digest_input, ec.ECDSA(hashes.SHA256()))

    def decode() -> Any:
        return STANDARD_DIALECT.decode(wire, verifier)

    def verify_only() -> Any:
        return verifier.verify_bytes(wire)

    def encode() -> Any:
        return STANDARD_DIALECT.encode(message, signer)

    return {
        "parse_validate_verify_per_s": rate(decode, seconds, runs),
        "parse_verify_per_s": rate(verify_only, seconds, runs),
        "build_sign_per_s": rate(encode, seconds, runs),
        "bare_sign_per_s": rate(bare_sign, seconds, runs),
        "bare_verify_per_s": rate(bare_verify, seconds, runs),
    }


def run_codec(args: argparse.Namespace) -> int:
    """Measure and report; see the module docstring."""

    from protocols import codec as xml_codec

    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "when": now.isoformat(timespec="seconds"),
        "runs": args.runs,
        "key_types": {},
    }
    message = samples.message(samples.direct_voucher(), "gateway")
    for key_type in (KeyType.RSA, KeyType.EC):
        ca_key = generate_key(key_type)
        ca = create_ca(ca_key, now)
        key = generate_key(key_type)
        cert = issue_signing_cert(ca, ca_key, key, "450100000000", now)
        signer, verifier = Signer(key, cert), Verifier(cert)
        wire = STANDARD_DIALECT.encode(message, signer)
        figures: dict[str, float] = {}
        figures.update(_measure(key, signer, verifier, message, wire, args.seconds, args.runs))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        peer = _signxml_pair(key, cert_pem, key_type, xml_codec.to_tree(message))
        if peer is not None:
            figures["signxml_verify_per_s"] = rate(peer[0], args.seconds, args.runs)
            figures["signxml_sign_per_s"] = rate(peer[1], args.seconds, args.runs)
            figures["verify_vs_signxml"] = figures["parse_verify_per_s"] / figures["signxml_verify_per_s"]
            figures["full_decode_vs_signxml"] = figures["parse_validate_verify_per_s"] / figures["signxml_verify_per_s"]
        figures["sign_vs_bare"] = figures["build_sign_per_s"] / figures["bare_sign_per_s"]
        figures["document_bytes"] = len(wire)
        results["key_types"][key_type.value] = figures
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"codec benchmark, one core, median of {args.runs} runs of {args.seconds}s; 2 KB voucher ({results['python']})"
    )
    print(
        f"{'':6}{'parse+verify':>14}{'signxml verify':>16}{'ratio':>7}{'+schema+rules':>15}{'ratio':>7}"
        f"{'build+sign':>12}{'bare sign':>11}{'ratio':>7}"
    )
    for name, f in results["key_types"].items():
        print(
            f"{name:6}{f['parse_verify_per_s']:>12.0f}/s{f.get('signxml_verify_per_s', 0):>14.0f}/s"
            f"{f.get('verify_vs_signxml', 0):>6.1f}x{f['parse_validate_verify_per_s']:>13.0f}/s"
            f"{f.get('full_decode_vs_signxml', 0):>6.1f}x{f['build_sign_per_s']:>10.0f}/s{f['bare_sign_per_s']:>9.0f}/s"
            f"{f['sign_vs_bare']:>6.2f}x"
        )
    print(f"written to {args.output}", file=sys.stderr)
    return 0


# --- tgw bench gateway ----------------------------------------------------------------------------------------

#: The one bank of a benchmark instance (standard dialect).
BENCH_BANK = "BENCH"
#: Payments per phase by default.
DEFAULT_GATEWAY_VOUCHERS = 2000
#: Where the scratch PostgreSQL databases (`tgw_bench_*`) are created by default.
DEFAULT_POSTGRESQL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The signature ceiling is timed on at most this many payments' worth of operations (the rate is what counts).
SIGNATURE_CEILING_PAYMENTS_MAX = 1000
#: The TLS echo is timed on at least this many payments (it is fast: fewer would measure mostly start-up).
TLS_ECHO_PAYMENTS_MIN = 20_000
#: A measurement in which no payment becomes final for this long has failed (the bank stopped answering).
STALL_S = 60.0
#: How long a process we started gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: Signature operations per payment (voucher out, ack in, receipt in, ack out), by side.
SIGNATURE_OPS = {
    "gateway": "signs the voucher and the reply to the receipt; verifies the ack and the receipt",
    "bank": "verifies the voucher and the reply; signs the ack and the receipt",
}


def _gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vouchers",
        type=int,
        default=DEFAULT_GATEWAY_VOUCHERS,
        metavar="N",
        help=f"payments in each timed phase (default {DEFAULT_GATEWAY_VOUCHERS})",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--key-type", choices=("rsa", "ec", "both"), default="both", help="rsa: RSA-2048, ec: P-256")
    parser.add_argument("--runs", type=int, default=1, help="repeat each measurement; medians are reported")
    parser.add_argument(
        "--window",
        type=int,
        default=512,
        help="max-rate phase: vouchers submitted and not yet final, at most (and at most a quarter of N)",
    )
    parser.add_argument("--batch", type=int, default=50, help="vouchers per submit transaction, at most")
    parser.add_argument(
        "--bank-in-process",
        action="store_true",
        help="run the simulated bank (and the TLS echo client) in this process instead of a second one",
    )
    parser.add_argument(
        "--postgresql",
        default=DEFAULT_POSTGRESQL,
        metavar="URL",
        help="PostgreSQL server on which scratch databases tgw_bench_* are created and dropped",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the feeder and the bank")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--output", type=Path, default=Path("bench-results/gateway.json"), help="results file")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile `p` (0–100) of `values`; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(round(p / 100 * len(ordered), 9)))  # round: 99.9 / 100 * 1000 is 999.0000000000001
    return ordered[rank - 1]


def latency_ms(values_s: list[float]) -> dict[str, float]:
    """p50, p99 and p99.9 of latencies given in seconds, in milliseconds."""
    return {name: round(percentile(values_s, p) * 1000, 2) for name, p in (("p50", 50), ("p99", 99), ("p99_9", 99.9))}


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process `pid` (this process when None)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the ceilings -----------------------------------------------------------------------------------------------


def payment_messages(key_type: KeyType) -> tuple[dict[str, bytes], Any]:
    """The four signed documents of one payment (standard dialect, a realistic voucher) and the key used."""
    from protocols.messages import Reply

    now = datetime.now(UTC)
    ca_key = generate_key(key_type)
    ca = create_ca(ca_key, now)
    key = generate_key(key_type)
    signer = Signer(key, issue_signing_cert(ca, ca_key, key, "450100000000", now))
    ack = Reply(ori_msg_no="5201", result=90000, add_word="")
    docs = {
        "voucher": STANDARD_DIALECT.encode(samples.message(samples.direct_voucher(), "gateway", 1), signer),
        "ack": STANDARD_DIALECT.encode(samples.message(ack, "bank", 2), signer),
        "receipt": STANDARD_DIALECT.encode(samples.message(samples.receipt(), "bank", 3), signer),
        "reply": STANDARD_DIALECT.encode(samples.message(ack, "gateway", 4), signer),
    }
    return docs, key


def signature_ceiling(key: Any, docs: dict[str, bytes], payments: int) -> dict[str, Any]:
    """Payments per second if signature operations were all there is (one core, bare `cryptography`).

    Each side's operations of a payment (:data:`SIGNATURE_OPS`) on the canonical bytes of the same documents,
    repeated `payments` times.
    """
    canonical = {n: etree.tostring(etree.fromstring(d), method="c14n", exclusive=True) for n, d in docs.items()}
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):

        def sign(data: bytes) -> bytes:
            return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))

        def verify(signature: bytes, data: bytes) -> None:
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())

    else:

        def sign(data: bytes) -> bytes:
            return bytes(key.sign(data, ec.ECDSA(hashes.SHA256())))

        def verify(signature: bytes, data: bytes) -> None:
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))

    signatures = {n: sign(d) for n, d in canonical.items()}

    def gateway() -> None:
        sign(canonical["voucher"])
        verify(signatures["ack"], canonical["ack"])
        verify(signatures["receipt"], canonical["receipt"])
        sign(canonical["reply"])

    def bank() -> None:
        verify(signatures["voucher"], canonical["voucher"])
        sign(canonical["ack"])
        sign(canonical["receipt"])
        verify(signatures["reply"], canonical["reply"])

    seconds = {}
    for name, fn in (("gateway", gateway), ("bank", bank)):
        fn()
        start = time.perf_counter()
        for _ in range(payments):
            fn()
        seconds[name] = time.perf_counter() - start
    return {
        "payments_timed": payments,
        "gateway_per_s": round(payments / seconds["gateway"], 1),
        "bank_per_s": round(payments / seconds["bank"], 1),
        "both_one_core_per_s": round(payments / (seconds["gateway"] + seconds["bank"]), 1),
    }


class _EchoServer(Protocol):
    """The gateway's side of the bare TLS echo: vouchers out (a window of them), a reply to every receipt."""

    def __init__(self, run: _EchoRun) -> None:
        self.run = run
        self.decoder = FrameDecoder(STANDARD_DIALECT.framing)

    def dataReceived(self, data: bytes) -> None:
        run = self.run
        transport: Any = self.transport
        for frame in self.decoder.feed(data):
            tag = frame[:1]
            if tag == b"H":  # the client is connected: start
                run.started = time.perf_counter()
                for _ in range(min(run.window, run.total)):
                    transport.write(run.frames["voucher"])
                    run.sent += 1
            elif tag == b"R":
                transport.write(run.frames["reply"])
                run.done += 1
                if run.sent < run.total:
                    transport.write(run.frames["voucher"])
                    run.sent += 1
                if run.done == run.total:
                    run.finished = time.perf_counter()
                    transport.loseConnection()
                    if not run.result.called:
                        run.result.callback(run.total / (run.finished - run.started))


class _EchoClient(Protocol):
    """The bank's side of the bare TLS echo: an ack and a receipt for every voucher."""

    def __init__(self, frames: dict[str, bytes]) -> None:
        self.frames = frames
        self.decoder = FrameDecoder(STANDARD_DIALECT.framing)

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frames["hello"])

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        for frame in self.decoder.feed(data):
            if frame[:1] == b"V":
                self.transport.write(self.frames["ack"])
                self.transport.write(self.frames["receipt"])


@dataclass
class _EchoRun:
    frames: dict[str, bytes]
    total: int
    window: int
    result: defer.Deferred[float]
    sent: int = 0
    done: int = 0
    started: float = 0.0
    finished: float = 0.0


def echo_frames(sizes: dict[str, int]) -> dict[str, bytes]:
    """Frames of the given body sizes (the standard framing), each body tagged by its first byte."""
    tags = {"voucher": b"V", "ack": b"A", "receipt": b"R", "reply": b"Y", "hello": b"H"}
    sizes = {**sizes, "hello": 1}
    return {n: encode_frame(STANDARD_DIALECT.framing, tags[n] + b"x" * (sizes[n] - 1)) for n in tags}


def _client_tls(ca: Path, cert: Path, key: Path) -> Any:
    from twisted.internet import ssl

    return ssl.optionsForClientTLS(
        "localhost",
        trustRoot=ssl.Certificate.loadPEM(ca.read_bytes()),
        clientCertificate=ssl.PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes()),
    )


def echo_client_main(argv: list[str]) -> int:
    """The echo client as its own process: `python -c … '{"host":…, "port":…, "sizes":…, …}'`."""
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory

    params = json.loads(argv[0])
    frames = echo_frames(params["sizes"])
    factory = ClientFactory.forProtocol(lambda: _EchoClient(frames))  # type: ignore[arg-type,return-value]
    factory.clientConnectionLost = lambda *_: reactor.stop()  # type: ignore[method-assign]
    factory.clientConnectionFailed = lambda *_: reactor.stop()  # type: ignore[method-assign]
    tls = _client_tls(Path(params["ca"]), Path(params["cert"]), Path(params["key"]))
    reactor.connectSSL(params["host"], params["port"], factory, tls)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return 0


@defer.inlineCallbacks
def tls_echo(reactor: Any, cfg: Any, sizes: dict[str, int], payments: int, window: int, in_process: bool) -> Any:
    """Payments per second of the bare transport: a payment's four frames over mutual TLS on loopback, with the
    gateway's TLS context and framing, no signatures, no XML, no database. Fires with the rate."""
    from twisted.internet.protocol import ClientFactory, ServerFactory

    from gateway.app import BankTlsContext

    result: defer.Deferred[float] = defer.Deferred()
    run = _EchoRun(echo_frames(sizes), payments, window, result)
    server = ServerFactory.forProtocol(lambda: _EchoServer(run))  # type: ignore[arg-type,return-value]
    port = reactor.listenSSL(0, server, BankTlsContext(cfg), interface="127.0.0.1")
    bank_dir = cfg.directory / "pki" / "banks" / BENCH_BANK
    process = None
    try:
        if in_process:
            client = ClientFactory.forProtocol(lambda: _EchoClient(run.frames))  # type: ignore[arg-type,return-value]
            tls = _client_tls(cfg.ca_cert, bank_dir / "cert.pem", bank_dir / "key.pem")
            reactor.connectSSL("127.0.0.1", port.getHost().port, client, tls)
        else:
            params = {
                "host": "127.0.0.1",
                "port": port.getHost().port,
                "sizes": sizes,
                "ca": str(cfg.ca_cert),
                "cert": str(bank_dir / "cert.pem"),
                "key": str(bank_dir / "key.pem"),
            }
            code = (
                "import sys; from gateway.commands.bench import echo_client_main; "
                "sys.exit(echo_client_main(sys.argv[1:]))"
            )
            process = subprocess.Popen([sys.executable, "-c", code, json.dumps(params)])
        rate = yield _with_timeout(reactor, result, 120.0, "the TLS echo")
    finally:
        yield port.stopListening()
        if process is not None:
            yield _stop_process(reactor, process, grace_s=STOP_TIMEOUT_S)  # it stops when the server hangs up
    return rate


def _with_timeout(reactor: Any, d: defer.Deferred[Any], timeout_s: float, what: str) -> defer.Deferred[Any]:
    def expired() -> None:
        if not d.called:
            d.errback(BenchError(f"{what} did not finish within {timeout_s:g} s"))

    call = reactor.callLater(timeout_s, expired)

    def done(result: Any) -> Any:
        if call.active():
            call.cancel()
        return result

    return d.addBoth(done)


@defer.inlineCallbacks
def _stop_process(reactor: Any, process: subprocess.Popen[bytes], grace_s: float = 0.0) -> Any:
    """Wait up to `grace_s` for it to exit by itself, then SIGTERM, wait (without blocking the reactor), then
    SIGKILL if it is still there."""
    deadline = time.monotonic() + grace_s
    while process.poll() is None and time.monotonic() < deadline:
        yield task.deferLater(reactor, 0.02, lambda: None)
    if process.poll() is None:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        yield task.deferLater(reactor, 0.02, lambda: None)
    if process.poll() is None:
        process.kill()
        process.wait()


class BenchError(Exception):
    """The benchmark could not run (a bank that does not start, a database that cannot be created, …)."""


# --- the gateway measurement ----------------------------------------------------------------------------------


class _Scratch:
    """What one measurement creates and must remove: a directory, a PostgreSQL database, a bank process, the
    simulation (the gateway and its store threads)."""

    _counter = 0

    def __init__(self, admin_url: str | None) -> None:
        _Scratch._counter += 1
        self.directory = Path(tempfile.mkdtemp(prefix="tgw-bench-"))
        self.admin_url = admin_url
        self.database: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.simulation: Any = None
        self.removed = False

    def database_url(self) -> str:
        if self.admin_url is None:
            return "sqlite:///gateway.db"
        import psycopg
        from sqlalchemy import make_url

        admin = make_url(self.admin_url)
        self.database = f"tgw_bench_{os.getpid()}_{_Scratch._counter}"
        try:
            with psycopg.connect(_libpq(admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')  # type: ignore[arg-type]
                conn.execute(f'CREATE DATABASE "{self.database}"')  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise BenchError(f"cannot create database {self.database} on {self.admin_url}: {exc}") from None
        return admin.set(database=self.database).render_as_string(hide_password=False)

    @defer.inlineCallbacks
    def remove(self, reactor: Any) -> Any:
        if self.removed:
            return
        self.removed = True
        if self.simulation is not None:  # interrupted mid-measurement: its store threads would keep us alive
            yield self.simulation.stop()
        if self.process is not None:
            yield _stop_process(reactor, self.process)
        if self.database is not None and self.admin_url is not None:
            import psycopg
            from sqlalchemy import make_url

            try:
                with psycopg.connect(_libpq(make_url(self.admin_url)), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')  # type: ignore[arg-type]
            except psycopg.Error as exc:
                log.warning("could not drop %s: %s", self.database, exc)
        shutil.rmtree(self.directory, ignore_errors=True)

    def abandon(self) -> None:
        """What :meth:`remove` does, without the reactor (it has stopped): the process, the store threads, the
        directory. A PostgreSQL database left behind is dropped by the next run's `DROP DATABASE IF EXISTS`."""
        if self.removed:
            return
        self.removed = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        if self.simulation is not None and self.simulation.running is not None:
            self.simulation.running.db.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _libpq(url: Any) -> str:
    """A SQLAlchemy URL as a libpq connection string (without a driver name)."""
    return str(url.set(drivername="postgresql").render_as_string(hide_password=False))


@defer.inlineCallbacks
def measure_gateway(reactor: Any, args: argparse.Namespace, database: str, key_type: str, scratch: _Scratch) -> Any:
    """One measurement: a fresh instance, the gateway, the bank; warm-up, max-rate phase, half-rate phase."""
    from gateway.demo import Simulation, create_instance

    n = args.vouchers
    # the closed loop must reach a steady state: at most a quarter of the payments outstanding at once
    batch = min(args.batch, max(1, n // 4))
    window = max(batch, min(args.window, n // 4))
    cfg = create_instance(
        scratch.directory / "instance", [(BENCH_BANK, "standard")], database=scratch.database_url(), key_type=key_type
    )
    sim = scratch.simulation = Simulation(
        cfg, reactor, seed=args.seed, in_process_banks=args.bank_in_process, web=False
    )
    try:
        sim.start_gateway()
        if not args.bank_in_process:
            command = [
                sys.executable,
                "-m",
                "gateway.cli",
                "simulate",
                "bank",
                "--config",
                str(cfg.path),
                "--bank",
                BENCH_BANK,
                "--seed",
                str(args.seed),
                "--log-level",
                "WARNING",
            ]
            with open(scratch.directory / "bank.log", "wb") as out:
                scratch.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        signed_on = sim.wait_signed_on()
        if scratch.process is not None:
            signed_on = _unless_exits(reactor, signed_on, scratch.process, scratch.directory / "bank.log")
        yield signed_on
        yield sim.grant_quota()
        warm = max(20, min(200, n // 5))
        vouchers = sim.next_vouchers(warm + 2 * n)
        yield sim.feed(warm, window=window, batch_max=batch, vouchers=vouchers[:warm])
        yield _settled(reactor, sim)

        tracker = sim.tracker
        before = set(tracker.submitted_at)
        bank_pid = scratch.process.pid if scratch.process is not None else None
        cpu = (_cpu_s(None), _cpu_s(bank_pid), time.perf_counter())
        yield sim.feed(n, window=window, batch_max=batch, vouchers=vouchers[warm : warm + n])
        yield _settled(reactor, sim)
        wall = time.perf_counter() - cpu[2]
        gateway_cpu, bank_cpu = (_cpu_s(None) - cpu[0]) / wall, (_cpu_s(bank_pid) - cpu[1]) / wall
        keys = [k for k in tracker.submitted_at if k not in before]
        finals = sorted(tracker.final_at[k] for k in keys)
        first = min(tracker.submitted_at[k] for k in keys)
        overall = len(keys) / (finals[-1] - first)
        lo, hi = int(0.1 * len(finals)), max(int(0.9 * len(finals)) - 1, int(0.1 * len(finals)) + 1)
        sustained = (hi - lo) / (finals[hi] - finals[lo]) if hi < len(finals) and finals[hi] > finals[lo] else overall
        at_max = latency_ms(tracker.latencies_s(keys))

        before = set(tracker.submitted_at)
        half_rate = sustained / 2
        start = time.perf_counter()
        yield sim.feed(n, rate_per_s=half_rate, window=10 * n, batch_max=batch, vouchers=vouchers[warm + n :])
        yield _settled(reactor, sim)
        half_keys = [k for k in tracker.submitted_at if k not in before]
        half_achieved = len(half_keys) / (max(tracker.final_at[k] for k in half_keys) - start)
        not_paid = sum(1 for k in keys + half_keys if tracker.state_of.get(k) not in ("PAID", "RETURNED"))
    finally:
        yield sim.stop()
        if sim.running is not None:
            sim.running.db.engine.dispose()
    return {
        "payments_per_s": round(sustained, 1),
        "payments_per_s_overall": round(overall, 1),
        "latency_ms_at_max": at_max,
        "half_rate_per_s": round(half_rate, 1),
        "half_rate_achieved_per_s": round(half_achieved, 1),
        "latency_ms_at_half": latency_ms(tracker.latencies_s(half_keys)),
        "not_paid": not_paid,
        "gateway_cpu_cores": round(gateway_cpu, 2),
        "bank_cpu_cores": round(bank_cpu, 2) if bank_pid is not None else None,
        # CPU per payment does not depend on what else the machine is doing; 1000 / it is what one idle core,
        # fully used, would sustain
        "gateway_cpu_ms_per_payment": round(gateway_cpu * wall / n * 1000, 2),
        "bank_cpu_ms_per_payment": round(bank_cpu * wall / n * 1000, 2) if bank_pid is not None else None,
    }


@defer.inlineCallbacks
def _settled(reactor: Any, sim: Any, stall_s: float = STALL_S) -> Any:
    """Fires when every payment submitted is final; fails when none became final for `stall_s` seconds (a bank
    that stopped answering must not hang the benchmark)."""
    last, since = sim.tracker.final, time.monotonic()
    while not sim.settled():
        if sim.tracker.final != last:
            last, since = sim.tracker.final, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise BenchError(
                f"no payment became final for {stall_s:g} s ({sim.tracker.outstanding} outstanding); see the bank's log"
            )
        yield task.deferLater(reactor, 0.02, lambda: None)


def _unless_exits(reactor: Any, d: defer.Deferred[Any], process: subprocess.Popen[bytes], log_file: Path) -> Any:
    """`d`, or a failure as soon as `process` exits before `d` fires (with the end of its log)."""

    @defer.inlineCallbacks
    def watch() -> Any:
        while not d.called:
            if process.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise BenchError(f"the simulated bank exited with {process.returncode}:\n{tail}")
            yield task.deferLater(reactor, 0.05, lambda: None)
        return (yield d)

    return watch()


def _median_entry(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field median of several runs' results (nested dictionaries too)."""
    out: dict[str, Any] = {}
    for name, first in runs[0].items():
        if isinstance(first, dict):
            out[name] = _median_entry([r[name] for r in runs])
        elif isinstance(first, int | float) and not isinstance(first, bool):
            out[name] = round(statistics.median(r[name] for r in runs), 2)
        else:
            out[name] = first
    return out


@defer.inlineCallbacks
def bench_gateway(reactor: Any, args: argparse.Namespace, scratches: list[_Scratch]) -> Any:
    """Every combination of database and key type, `args.runs` times each; the ceilings per key type."""
    from gateway.demo import create_instance

    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    key_types = ["rsa", "ec"] if args.key_type == "both" else [args.key_type]
    results: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "vouchers": args.vouchers,
        "runs": args.runs,
        "window": args.window,
        "batch": args.batch,
        "bank": "in this process" if args.bank_in_process else "its own process (tgw simulate bank)",
        "signature_ops_per_payment": SIGNATURE_OPS,
        "ceilings": {},
        "results": [],
    }
    for key_type in key_types:
        docs, key = payment_messages(KeyType(key_type))
        sizes = {name: len(doc) for name, doc in docs.items()}
        scratch = _Scratch(None)
        scratches.append(scratch)
        cfg = create_instance(scratch.directory / "instance", [(BENCH_BANK, "standard")], key_type=key_type)
        ceiling_runs = []
        echo_payments = max(args.vouchers, TLS_ECHO_PAYMENTS_MIN)
        for _ in range(args.runs):
            figures = signature_ceiling(key, docs, min(args.vouchers, SIGNATURE_CEILING_PAYMENTS_MAX))
            figures["tls_echo_per_s"] = round(
                (yield tls_echo(reactor, cfg, sizes, echo_payments, args.window, args.bank_in_process)), 1
            )
            ceiling_runs.append(figures)
        yield scratch.remove(reactor)
        results["ceilings"][key_type] = {**_median_entry(ceiling_runs), "frame_body_bytes": sizes}
        for database in databases:
            runs = []
            for _ in range(args.runs):
                scratch = _Scratch(args.postgresql if database == "postgresql" else None)
                scratches.append(scratch)
                try:
                    runs.append((yield measure_gateway(reactor, args, database, key_type, scratch)))
                finally:
                    yield scratch.remove(reactor)
            entry = {"database": database, "key_type": key_type, **_median_entry(runs)}
            ceiling = results["ceilings"][key_type]
            rate = entry["payments_per_s"]  # ratios keep 3 significant digits: against the echo they are tiny
            entry["vs_gateway_signature_ceiling"] = float(f"{rate / ceiling['gateway_per_s']:.3g}")
            entry["vs_signature_ceiling_one_core"] = float(f"{rate / ceiling['both_one_core_per_s']:.3g}")
            entry["vs_tls_echo"] = float(f"{rate / ceiling['tls_echo_per_s']:.3g}")
            entry["runs"] = runs
            results["results"].append(entry)
    return results


def run_gateway(args: argparse.Namespace) -> int:
    """`tgw bench gateway`: payments per second and submit→PAID latency of the whole gateway, beside its ceilings.

    A payment is a voucher out, its ack in, the receipt in and the reply out: four signed messages, every one
    verified, archived and recorded in the store before it is acknowledged. Per database and key type: a fresh
    instance (`tgw init`'s code path) with one bank; the simulated bank in its own process (`tgw simulate bank`;
    the gateway process then has a core to itself on a 2-core machine, as it would facing a real bank), or in
    this process with `--bank-in-process`. A warm-up, then the max-rate phase (closed loop: `--window`
    vouchers outstanding, submitted in batches of up to `--batch`): payments per second between 10 % and 90 %
    of the payments final, and latency percentiles; then the half-rate phase (open loop, at half that rate):
    latency percentiles. The ceilings, in the same run: the signature operations of a payment alone (bare
    `cryptography`, per side, on up to 1,000 payments' worth), and the payment's four frames (same sizes) over
    mutual TLS on loopback with the gateway's TLS context and framing (on at least 20,000 payments).
    """
    if args.vouchers < 10 or args.runs < 1 or args.window < 1 or args.batch < 1:
        print("tgw: --vouchers ≥ 10, --runs, --window and --batch ≥ 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from twisted.internet import reactor

    outcome: dict[str, Any] = {}
    scratches: list[_Scratch] = []

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            outcome["results"] = yield bench_gateway(reactor, args, scratches)
        except Exception as exc:
            outcome["error"] = str(exc) if isinstance(exc, BenchError | DemoError) else f"{type(exc).__name__}: {exc}"
            log.debug("bench failed", exc_info=True)
        if reactor.running:
            reactor.stop()

    @defer.inlineCallbacks
    def cleanup() -> Any:  # also on Ctrl-C: no bank process, database or directory is left behind
        for scratch in scratches:
            yield scratch.remove(reactor)

    from gateway.demo import DemoError

    reactor.addSystemEventTrigger("before", "shutdown", cleanup)  # type: ignore[attr-defined]
    reactor.callWhenRunning(main)  # type: ignore[attr-defined]
    try:
        reactor.run()  # type: ignore[attr-defined]
    finally:  # a KeyboardInterrupt out of the reactor skips the shutdown trigger: release what it would have
        for scratch in scratches:
            scratch.abandon()
    if "error" in outcome:
        print(f"tgw: bench failed: {outcome['error']}", file=sys.stderr)
        return 1
    if "results" not in outcome:
        return 130  # interrupted
    results = outcome["results"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_gateway(results)
    sys.stdout.flush()
    print(f"written to {args.output}", file=sys.stderr)
    return 0


def print_gateway(results: dict[str, Any]) -> None:
    """The gateway benchmark as a table."""
    print(
        f"gateway benchmark: {results['vouchers']} payments per phase, median of {results['runs']} run(s); "
        f"bank in {results['bank']}; {results['cpus']} CPUs, Python {results['python']}"
    )
    print(
        f"{'':18}{'payments/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'p99.9':>9} │{'half rate/s':>12}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'p99.9':>9} │{'gw CPU':>7}{'ms/pay':>7}{'÷sig gw':>9}{'÷sig all':>9}{'÷TLS':>9}"
    )
    for r in results["results"]:
        m, h = r["latency_ms_at_max"], r["latency_ms_at_half"]
        print(
            f"{r['database'] + ' ' + r['key_type']:18}{r['payments_per_s']:>11.0f}{m['p50']:>9.1f}{m['p99']:>9.1f}"
            f"{m['p99_9']:>9.1f} │{r['half_rate_per_s']:>12.0f}{h['p50']:>9.1f}{h['p99']:>9.1f}{h['p99_9']:>9.1f} │"
            f"{r['gateway_cpu_cores']:>7.2f}{r['gateway_cpu_ms_per_payment']:>7.1f}{r['vs_gateway_signature_ceiling']:>9.2f}"
            f"{r['vs_signature_ceiling_one_core']:>9.2f}{r['vs_tls_echo']:>9.1e}"
        )
    print("ceilings (payments/s):")
    for key_type, c in results["ceilings"].items():
        sizes = ", ".join(f"{n} {b} B" for n, b in c["frame_body_bytes"].items())
        print(
            f"  {key_type:4} signatures alone: gateway side {c['gateway_per_s']:.0f}/s, "
            f"bank side {c['bank_per_s']:.0f}/s, both on one core {c['both_one_core_per_s']:.0f}/s; "
            f"TLS echo {c['tls_echo_per_s']:.0f}/s ({sizes})"
        )
