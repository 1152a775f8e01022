"""`tgw bench codec`: messages per second of the protocol core, beside its ceiling and a peer library.

Measured on one core, in one process, for a realistic ~2 KB voucher (PROTOCOL.md §5.1), with RSA-2048 and P-256:
- parse+validate+verify: framing body → hardened parse → signature check with the pinned key → schema, typed
  values, business rules (what the gateway does with every inbound message);
- build+sign: canonical message → tree → signed bytes (every outbound message);
- the ceiling: the bare signature operations alone (`cryptography`), on the same number of bytes;
- the peer: `signxml` verifying and signing the same documents.
Each figure is the median of several timed runs; the figures are printed and written to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from banks.standard import STANDARD_DIALECT
from certs.pki import KeyType, create_ca, generate_key, issue_signing_cert
from protocols import samples
from protocols.signature import Signer, Verifier


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bench", help="benchmarks (measured, printed, written to a file)")
    bsub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    codec = bsub.add_parser("codec", help="protocol core: parse+validate+verify and build+sign per second")
    codec.add_argument("--runs", type=int, default=5, help="timed runs per figure (the median is reported)")
    codec.add_argument("--seconds", type=float, default=0.4, help="length of one timed run")
    codec.add_argument("--json", action="store_true", help="print the results as JSON")
    codec.add_argument("--output", type=Path, default=Path("bench-results/codec.json"), help="results file")
    codec.set_defaults(func=run_codec)


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
        f"{'':10}{'parse+validate+verify':>24}{'signxml verify':>16}{'ratio':>8}{'build+sign':>13}"
        f"{'bare sign':>12}{'ratio':>8}"
    )
    for name, f in results["key_types"].items():
        print(
            f"{name:10}{f['parse_validate_verify_per_s']:>22.0f}/s{f.get('signxml_verify_per_s', 0):>14.0f}/s"
            f"{f.get('verify_vs_signxml', 0):>7.1f}x{f['build_sign_per_s']:>11.0f}/s{f['bare_sign_per_s']:>10.0f}/s"
            f"{f['sign_vs_bare']:>7.2f}x"
        )
    print(f"written to {args.output}", file=sys.stderr)
    return 0
