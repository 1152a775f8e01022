"""`tgw bench` (the gateway benchmark): a short real run in a subprocess, and its arithmetic. No timing asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.cli import build_parser
from gateway.commands import bench


def test_a_short_gateway_benchmark_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "gateway.json"
    command = [sys.executable, "-m", "gateway.cli", "bench", "--vouchers", "50", "--database", "sqlite"]
    command += ["--key-type", "ec", "--json", "--output", str(output)]
    # its own process group: on a timeout the simulated bank it started goes too
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, stderr
    results = json.loads(stdout)
    assert json.loads(output.read_text(encoding="utf-8")) == results
    assert results["vouchers"] == 50 and results["runs"] == 1
    assert "own process" in results["bank"]
    [entry] = results["results"]
    assert (entry["database"], entry["key_type"]) == ("sqlite", "ec")
    assert entry["not_paid"] == 0
    assert entry["payments_per_s"] > 0 and entry["payments_per_s_overall"] > 0
    assert entry["half_rate_per_s"] == round(entry["payments_per_s"] / 2, 1) or entry["half_rate_per_s"] > 0
    assert entry["half_rate_achieved_per_s"] > 0
    for latencies in (entry["latency_ms_at_max"], entry["latency_ms_at_half"]):
        assert 0 < latencies["p50"] <= latencies["p99"] <= latencies["p99_9"]
    assert entry["gateway_cpu_cores"] > 0 and entry["bank_cpu_cores"] is not None
    # the bank's CPU is read from /proc in clock ticks (10 ms): a few dozen payments may round to none
    assert entry["gateway_cpu_ms_per_payment"] > 0 and entry["bank_cpu_ms_per_payment"] >= 0
    for ratio in ("vs_gateway_signature_ceiling", "vs_signature_ceiling_one_core", "vs_tls_echo"):
        assert entry[ratio] > 0
    ceiling = results["ceilings"]["ec"]
    assert ceiling["gateway_per_s"] > 0 and ceiling["bank_per_s"] > 0 and ceiling["tls_echo_per_s"] > 0
    assert ceiling["both_one_core_per_s"] < min(ceiling["gateway_per_s"], ceiling["bank_per_s"])
    assert set(ceiling["frame_body_bytes"]) == {"voucher", "ack", "receipt", "reply"}
    assert all(size > 500 for size in ceiling["frame_body_bytes"].values())


def test_plain_bench_is_the_gateway_benchmark_and_bench_codec_is_kept() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench"]).func is bench.run_gateway
    args = parser.parse_args(["bench", "gateway", "--vouchers", "10", "--database", "postgresql", "--key-type", "rsa"])
    assert (args.func, args.vouchers, args.database, args.key_type) == (bench.run_gateway, 10, "postgresql", "rsa")
    codec = parser.parse_args(["bench", "codec"])
    assert codec.func is bench.run_codec and codec.output == Path("bench-results/codec.json")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 1001)]
    assert bench.percentile(values, 50) == 500.0
    assert bench.percentile(values, 99) == 990.0
    assert bench.percentile(values, 99.9) == 999.0
    assert bench.percentile([3.0], 99.9) == 3.0
    assert bench.percentile([], 50) == 0.0
    assert bench.latency_ms([0.001, 0.002]) == {"p50": 1.0, "p99": 2.0, "p99_9": 2.0}


def test_medians_of_runs_are_taken_field_by_field() -> None:
    runs = [
        {"rate": 10.0, "latency": {"p50": 1.0}, "name": "a"},
        {"rate": 30.0, "latency": {"p50": 3.0}, "name": "a"},
        {"rate": 20.0, "latency": {"p50": 2.0}, "name": "a"},
    ]
    assert bench._median_entry(runs) == {"rate": 20.0, "latency": {"p50": 2.0}, "name": "a"}
