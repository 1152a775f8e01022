"""The ``tgw pki`` command group: create and run an instance's development PKI from the command line.

`gateway/cli.py` calls :func:`register` with its sub-parsers and dispatches to ``args.func(args)``, which
returns the exit code. This module is the only place in `certs/` that reads the wall clock and the
environment (for ``--passphrase-env``); :func:`register` takes the clock as a parameter so tests can fix it.

Sub-commands::

    pki init DIR --node CODE --bank CODE... [--key-type rsa|ec] [--passphrase-env VAR]
    pki issue-bank DIR CODE [--key-type rsa|ec] [--passphrase-env VAR]
    pki revoke DIR (--bank CODE | --serial N) [--reason R] [--passphrase-env VAR]
    pki crl DIR [--refresh] [--passphrase-env VAR]
    pki show FILE

Errors print one plain line to stderr (``tgw pki: error: …``) and return 1.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from certs import pki
from certs.pki import KeyType, PkiError
from certs.store import PkiDirectory

__all__ = ["Clock", "register"]

Clock = Callable[[], datetime]

_PROG = "tgw pki"


def _wall_clock() -> datetime:
    """The current time in UTC: the one wall-clock read of the package."""
    return datetime.now(UTC)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *, clock: Clock = _wall_clock
) -> argparse.ArgumentParser:
    """Add the ``pki`` command group to a parser's sub-commands.

    Args:
        subparsers: What ``parser.add_subparsers()`` returned.
        clock: Returns the current aware time; only tests pass anything but the wall clock.

    Returns:
        The ``pki`` parser.
    """
    pki_parser = subparsers.add_parser("pki", help="the development PKI: CA, gateway and bank certificates, CRL")
    pki_parser.set_defaults(func=functools.partial(_usage, pki_parser))
    commands = pki_parser.add_subparsers(dest="pki_command", metavar="COMMAND")

    key_type_help = "key algorithm: rsa (RSA-2048) or ec (ECDSA P-256)"
    passphrase_help = "read the private-key passphrase from this environment variable"

    p = commands.add_parser("init", help="create a CA, the gateway's certificates and one per bank")
    p.add_argument("dir", type=Path, help="the PKI directory (created if missing)")
    p.add_argument("--node", required=True, metavar="CODE", help="the gateway's node code, e.g. 450100000000")
    p.add_argument("--bank", required=True, nargs="+", action="extend", metavar="CODE", dest="banks", help="bank codes")
    p.add_argument("--key-type", choices=[k.value for k in KeyType], default=KeyType.RSA.value, help=key_type_help)
    p.add_argument("--passphrase-env", metavar="VAR", help=passphrase_help + " (encrypts every key written)")
    p.set_defaults(func=functools.partial(_cmd_init, clock=clock))

    p = commands.add_parser("issue-bank", help="issue or re-issue a bank's client certificate and key")
    p.add_argument("dir", type=Path, help="the PKI directory")
    p.add_argument("code", help="the bank code")
    p.add_argument("--key-type", choices=[k.value for k in KeyType], help=key_type_help + " (default: the CA's)")
    p.add_argument("--passphrase-env", metavar="VAR", help=passphrase_help)
    p.set_defaults(func=functools.partial(_cmd_issue_bank, clock=clock))

    p = commands.add_parser("revoke", help="revoke a certificate and rewrite crl.pem")
    p.add_argument("dir", type=Path, help="the PKI directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--bank", metavar="CODE", help="revoke this bank's current certificate")
    which.add_argument("--serial", metavar="N", type=_serial, help="revoke by serial (decimal or 0x-hex)")
    p.add_argument(
        "--reason", default="unspecified", help="CRL reason: keyCompromise, superseded, cessationOfOperation, …"
    )
    p.add_argument("--passphrase-env", metavar="VAR", help=passphrase_help)
    p.set_defaults(func=functools.partial(_cmd_revoke, clock=clock))

    p = commands.add_parser("crl", help="print the CRL's revoked serials")
    p.add_argument("dir", type=Path, help="the PKI directory")
    p.add_argument("--refresh", action="store_true", help="re-sign the CRL first with a new nextUpdate")
    p.add_argument("--passphrase-env", metavar="VAR", help=passphrase_help)
    p.set_defaults(func=functools.partial(_cmd_crl, clock=clock))

    p = commands.add_parser("show", help="describe the certificate(s) in a PEM file")
    p.add_argument("file", type=Path, help="a PEM certificate or chain file")
    p.set_defaults(func=_cmd_show)
    return pki_parser


# --- helpers -----------------------------------------------------------------------------------------------


class _UsageError(Exception):
    """A command-line mistake that argparse could not catch (such as an unset environment variable)."""


def _serial(text: str) -> int:
    """A serial number from decimal or ``0x`` hexadecimal text (colons allowed in hex, as openssl prints)."""
    cleaned = text.strip().replace(":", "")
    try:
        value = int(cleaned[2:], 16) if cleaned.lower().startswith("0x") else int(cleaned, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a serial number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"serial numbers are positive: {text!r}")
    return value


def _passphrase(args: argparse.Namespace) -> bytes | None:
    var: str | None = getattr(args, "passphrase_env", None)
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise _UsageError(f"environment variable {var} (from --passphrase-env) is not set")
    if not value:
        raise _UsageError(f"environment variable {var} (from --passphrase-env) is empty")
    return value.encode("utf-8")


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 1


def _guarded(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a handler, turning the errors a user can cause into one line on stderr and exit status 1."""
    try:
        return handler(args)
    except (PkiError, _UsageError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fmt_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- commands ----------------------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace, *, clock: Clock) -> int:
    def run(args: argparse.Namespace) -> int:
        store = PkiDirectory(args.dir)
        store.init(args.node, args.banks, KeyType(args.key_type), clock(), _passphrase(args))
        print(f"created a {args.key_type} PKI in {store.path} for node {args.node}")
        print(f"  CA                 {store.ca_cert_path}")
        print(f"  gateway TLS        {store.gateway_tls_cert_path}")
        print(f"  gateway signing    {store.gateway_signing_cert_path}")
        for code in args.banks:
            print(f"  bank {code:<13} {store.bank_cert_path(code)}")
        print(f"  CRL                {store.crl_path}")
        return 0

    return _guarded(run, args)


def _cmd_issue_bank(args: argparse.Namespace, *, clock: Clock) -> int:
    def run(args: argparse.Namespace) -> int:
        store = PkiDirectory(args.dir)
        if not store.exists():
            raise PkiError(f"{store.path} holds no CA; run `{_PROG} init` first")
        previous = store.load_bank_cert(args.code) if store.bank_cert_path(args.code).exists() else None
        key_type = KeyType(args.key_type) if args.key_type else None
        cert = store.issue_bank(args.code, key_type, clock(), passphrase=_passphrase(args))
        print(f"issued {args.code}: serial {cert.serial_number}, valid until {_fmt_time(cert.not_valid_after_utc)}")
        print(f"  {store.bank_cert_path(args.code)}")
        print(f"  {store.bank_key_path(args.code)}")
        if previous is not None:
            print(
                f"note: the previous certificate (serial {previous.serial_number}) stays valid until revoked: "
                f"{_PROG} revoke {store.path} --serial {previous.serial_number} --reason superseded"
            )
        return 0

    return _guarded(run, args)


def _cmd_revoke(args: argparse.Namespace, *, clock: Clock) -> int:
    def run(args: argparse.Namespace) -> int:
        store = PkiDirectory(args.dir)
        target: x509.Certificate | int = store.load_bank_cert(args.bank) if args.bank else args.serial
        serial = target.serial_number if isinstance(target, x509.Certificate) else target
        already = next((e for e in store.revoked_entries() if e.serial == serial), None)
        entry = store.revoke(target, args.reason, clock(), passphrase=_passphrase(args))
        what = f"bank {args.bank} certificate serial {serial}" if args.bank else f"serial {serial}"
        if already is not None:
            print(f"{what} was already revoked at {_fmt_time(entry.revoked_at)} ({entry.reason.value})")
        else:
            print(f"revoked {what} ({entry.reason.value}); {store.crl_path} rewritten")
        return 0

    return _guarded(run, args)


def _cmd_crl(args: argparse.Namespace, *, clock: Clock) -> int:
    def run(args: argparse.Namespace) -> int:
        store = PkiDirectory(args.dir)
        now = clock()
        crl = store.publish_crl(now, passphrase=_passphrase(args)) if args.refresh else store.crl()
        print(f"# issuer {crl.issuer.rfc4514_string()}")
        print(f"# this update {_fmt_time(crl.last_update_utc)}, next update {_fmt_time(crl.next_update_utc)}")
        for revoked in crl:
            try:
                reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = x509.ReasonFlags.unspecified.value
            print(f"{revoked.serial_number}\t{_fmt_time(revoked.revocation_date_utc)}\t{reason}")
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            print(
                f"warning: the CRL expired at {_fmt_time(crl.next_update_utc)}; "
                f"run `{_PROG} crl {store.path} --refresh`",
                file=sys.stderr,
            )
        return 0

    return _guarded(run, args)


def _cmd_show(args: argparse.Namespace) -> int:
    def run(args: argparse.Namespace) -> int:
        certs = pki.load_certificate_chain(args.file)
        for index, cert in enumerate(certs):
            if index:
                print()
            try:
                code = pki.bank_code_of(cert)
                bank = code if code is not None else "(none: not a bank certificate)"
            except pki.BankIdentityError as exc:
                bank = f"(invalid: {exc})"
            print(f"subject:     {cert.subject.rfc4514_string()}")
            print(f"issuer:      {cert.issuer.rfc4514_string()}")
            print(f"bank code:   {bank}")
            print(f"serial:      {cert.serial_number} (0x{cert.serial_number:x})")
            print(f"not before:  {_fmt_time(cert.not_valid_before_utc)}")
            print(f"not after:   {_fmt_time(cert.not_valid_after_utc)}")
            print(f"key type:    {pki.describe_key(cert.public_key())}")
        return 0

    return _guarded(run, args)
