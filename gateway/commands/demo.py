"""`tgw demo`: the main job in one command (filled in as the gateway grows)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help="run the gateway with simulated banks and the feeder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("demo: not yet")
    return 0
