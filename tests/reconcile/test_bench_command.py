"""`tgw bench reconcile` hands every option to `reconciliation.bench.main`; `bench codec` and `bench gateway` stay."""

from __future__ import annotations

from gateway.cli import build_parser
from gateway.commands import bench


def test_bench_reconcile_passes_its_options_through() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "reconcile", "--sizes", "1000", "--no-pandas", "--help"])
    assert args.func is bench.run_reconcile
    assert args.bench_args == ["--sizes", "1000", "--no-pandas", "--help"]
    assert parser.parse_args(["bench", "reconcile"]).bench_args == []
    assert parser.parse_args(["bench", "codec"]).func is bench.run_codec
    assert parser.parse_args(["bench", "gateway"]).func is bench.run_gateway
