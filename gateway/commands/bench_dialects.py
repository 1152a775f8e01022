"""`tgw bench dialects`: what a bank's dialect costs, per dialect, beside the standard.

Two measurements, printed and written to a JSON file:
- the codec: encode+sign and decode+verify per second of the same realistic voucher in every registered dialect
  (GBK transcoding, another layout, another signature scheme: each dialect's own cost, on one core), with the
  key type its signature scheme takes;
- the gateway: the three agent banks' dialects at once (ICBC:icbc, CCB:ccb, BOCOM:bocom by default), one simulated
  bank each, all in this process and one reactor, fed as fast as the gateway takes vouchers; payments per second
  and submit→PAID latency per dialect.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer

from banks import registry
from certs.pki import KeyType, create_ca, generate_key, issue_bank_cert
from protocols import samples
from protocols.signature import ECDSA_SHA256, RSA_SHA256, Signer, Verifier

DEFAULT_BANKS = "ICBC:icbc,CCB:ccb,BOCOM:bocom"


def register(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = bsub.add_parser("dialects", help="the cost of each bank dialect: codec rates, and payments/s per dialect")
    p.add_argument("--vouchers", type=int, default=600, help="vouchers in the gateway run, spread over the banks")
    p.add_argument("--banks", default=DEFAULT_BANKS, help=f"CODE:DIALECT,… for the gateway run ({DEFAULT_BANKS})")
    p.add_argument("--seconds", type=float, default=0.3, help="length of one timed codec run")
    p.add_argument("--runs", type=int, default=3, help="timed codec runs per figure (the median is reported)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--output", type=Path, default=Path("bench-results/dialects.json"), help="results file")
    p.set_defaults(func=run)


def _rate(fn: Callable[[], Any], seconds: float, runs: int) -> float:
    fn()
    rates = []
    for _ in range(runs):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def codec_rates(seconds: float, runs: int) -> dict[str, Any]:
    """Encode+sign and decode+verify per second of the sample 5201 voucher in every registered dialect."""
    now = datetime.now(UTC)
    keys = {}
    for key_type, method in ((KeyType.RSA, RSA_SHA256), (KeyType.EC, ECDSA_SHA256)):
        ca_key = generate_key(key_type)
        key = generate_key(key_type)
        cert = issue_bank_cert(create_ca(ca_key, now), ca_key, key, "ICBC", now)
        keys[method] = (Signer(key, cert), Verifier(cert))
    message = samples.message(samples.direct_voucher(), "gateway")
    out: dict[str, Any] = {}
    for code in sorted(registry.DIALECTS):
        dialect = registry.get(code)
        method = RSA_SHA256 if RSA_SHA256 in dialect.signature_methods else ECDSA_SHA256
        signer, verifier = keys[method]
        wire = dialect.encode(message, signer)

        def encode(d: Any = dialect, s: Signer = signer) -> Any:
            return d.encode(message, s)

        def decode(d: Any = dialect, w: bytes = wire, v: Verifier = verifier) -> Any:
            return d.decode(w, v)

        out[code] = {
            "key": "RSA-2048" if method == RSA_SHA256 else "P-256",
            "encoding": dialect.encoding,
            "document_bytes": len(wire),
            "encode_sign_per_s": round(_rate(encode, seconds, runs)),
            "decode_verify_per_s": round(_rate(decode, seconds, runs)),
        }
    return out


def gateway_run(args: argparse.Namespace) -> dict[str, Any]:
    """The banks of `--banks` at once against one gateway; per-dialect payments/s and latency."""
    from twisted.internet import reactor

    from gateway.demo import Simulation, create_instance, parse_banks

    banks = parse_banks(args.banks)
    directory = Path(tempfile.mkdtemp(prefix="tgw-bench-dialects-")) / "instance"
    cfg = create_instance(directory, banks)
    sim = Simulation(cfg, reactor, seed=args.seed, web=False)
    result: dict[str, Any] = {}
    errors: list[str] = []

    @defer.inlineCallbacks
    def main() -> Any:
        try:
            yield sim.start()
            start = time.perf_counter()
            yield sim.feed(args.vouchers)
            yield sim.wait_settled()
            elapsed = time.perf_counter() - start
            tracker = sim.tracker
            per_bank: dict[str, Any] = {}
            for code, dialect in banks:
                keys = [k for k, b in tracker.bank_of.items() if b == code]
                finals = [tracker.final_at[k] for k in keys if k in tracker.final_at]
                first = min(tracker.submitted_at[k] for k in keys) if keys else start
                span = (max(finals) - first) if finals else 0.0
                latencies = sorted(tracker.latencies_s(keys))
                per_bank[code] = {
                    "dialect": dialect,
                    "vouchers": len(keys),
                    "final": len(finals),
                    "payments_per_s": round(len(finals) / span, 1) if span > 0 else 0.0,
                    "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
                    "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)
                    if latencies
                    else None,
                }
            result.update(
                {
                    "vouchers": args.vouchers,
                    "elapsed_s": round(elapsed, 2),
                    "total_per_s": round(tracker.final / elapsed, 1),
                    "banks": per_bank,
                }
            )
        except Exception as exc:  # reported, not swallowed: the command exits non-zero
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            yield sim.stop()
            if reactor.running:
                reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    if errors:
        raise RuntimeError("; ".join(errors))
    return result


def run(args: argparse.Namespace) -> int:
    """Measure, print, write the JSON file."""
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "codec": codec_rates(args.seconds, args.runs),
    }
    try:
        results["gateway"] = gateway_run(args)
    except Exception as exc:  # the codec figures are still worth keeping
        print(f"tgw bench dialects: the gateway run failed: {exc}", file=sys.stderr)
        results["gateway"] = {"error": str(exc)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0 if "error" not in results["gateway"] else 1
    print("codec per dialect (one core; medians):")
    print(f"  {'dialect':10}{'key':>10}{'encoding':>10}{'bytes':>8}{'encode+sign':>14}{'decode+verify':>16}")
    for code, f in results["codec"].items():
        print(
            f"  {code:10}{f['key']:>10}{f['encoding']:>10}{f['document_bytes']:>8}"
            f"{f['encode_sign_per_s']:>12}/s{f['decode_verify_per_s']:>14}/s"
        )
    gw = results["gateway"]
    if "banks" in gw:
        print(f"gateway, {gw['vouchers']} vouchers over {len(gw['banks'])} banks at once: {gw['total_per_s']}/s in all")
        for code, b in gw["banks"].items():
            print(
                f"  {code:8}{b['dialect']:>8}{b['payments_per_s']:>10}/s   p50 {b['p50_ms']} ms   p99 {b['p99_ms']} ms"
            )
    print(f"written to {args.output}", file=sys.stderr)
    return 0 if "error" not in gw else 1
