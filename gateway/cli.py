"""The `tgw` command line: one entry point, a sub-command per job (message, pki, bench, demo, …)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from certs import cli as pki_cli
from gateway.commands import bench, breaks, cards, demo, instance, message, reconcile, simulate, users


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; each sub-command sets `func(args) -> int`."""
    parser = argparse.ArgumentParser(
        prog="tgw",
        description="Treasury payment data exchange gateway (财政银行业务数据交换平台).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    instance.register(sub)
    cards.register(sub)  # official cards (issue 5)
    message.register(sub)
    pki_cli.register(sub)
    bench.register(sub)
    demo.register(sub)
    simulate.register(sub)
    users.register(sub)  # issue 7: dashboard accounts
    reconcile.register(sub)  # issue 6: nightly reconciliation, by hand
    breaks.register(sub)  # issue 6: reconciliation breaks and their resolution
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tgw`; returns the exit code (0 success, 1 the input is wrong, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
