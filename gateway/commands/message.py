"""`tgw message validate|sign|verify`: the bank integrator's tool for checking messages against the standard.

Exit codes: 0 the message is fine; 1 it is not (every problem is printed, with its field); 2 usage errors
(a missing file, an unreadable key). A bank's developer runs these before connecting.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from banks import registry
from banks.dialect import Dialect
from certs.pki import PkiError, load_certificate, load_private_key
from protocols.errors import ProtocolError, SignatureError, SignatureMissing, ValidationError
from protocols.signature import Signer, Verifier


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("message", help="validate, sign and verify messages of the exchange standard")
    msub = parser.add_subparsers(dest="message_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", type=Path, help="the message document (XML)")
        p.add_argument("--dialect", default="standard", help="bank dialect code (default: standard)")

    v = msub.add_parser("validate", help="check schema and business rules; list every problem with its field")
    common(v)
    v.set_defaults(func=validate)
    s = msub.add_parser("sign", help="sign an unsigned message (enveloped XMLDSig, PROTOCOL.md §6)")
    common(s)
    s.add_argument("--key", required=True, type=Path, help="private key (PEM)")
    s.add_argument("--cert", required=True, type=Path, help="certificate to carry in KeyInfo (PEM)")
    s.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding the key's passphrase")
    s.add_argument("-o", "--output", type=Path, help="write the signed message here (default: standard output)")
    s.set_defaults(func=sign)
    f = msub.add_parser("verify", help="verify the signature with the sender's certificate, then validate")
    common(f)
    f.add_argument("--cert", required=True, type=Path, help="the sender's certificate (PEM), pinned")
    f.set_defaults(func=verify)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        print(f"tgw message: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def _dialect(code: str) -> Dialect | None:
    try:
        return registry.get(code)
    except registry.UnknownDialect as exc:
        print(f"tgw message: {exc}", file=sys.stderr)
        return None


def validate(args: argparse.Namespace) -> int:
    """Schema and business rules; every problem listed with its field."""
    data, dialect = _read(args.file), _dialect(args.dialect)
    if data is None or dialect is None:
        return 2
    try:
        problems = dialect.check(data)
    except ValidationError as exc:
        problems = list(exc.problems)
    except ProtocolError as exc:
        print(f"{args.file}: INVALID ({exc.result_code}): {exc}")
        return 1
    if problems:
        print(f"{args.file}: INVALID, {len(problems)} problem{'s' if len(problems) > 1 else ''}:")
        for problem in problems:
            print(f"  {problem.field}: {problem.message}")
        return 1
    print(f"{args.file}: valid ({dialect.code} dialect); the signature is not checked here, use `verify --cert`")
    return 0


def sign(args: argparse.Namespace) -> int:
    """Sign a document; refuses an invalid or already signed one."""
    data, dialect = _read(args.file), _dialect(args.dialect)
    if data is None or dialect is None:
        return 2
    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None
    try:
        signer = Signer(load_private_key(args.key, passphrase), load_certificate(args.cert))
    except (PkiError, ProtocolError) as exc:
        print(f"tgw message: {exc}", file=sys.stderr)
        return 2
    try:
        problems = dialect.check(data)
        if problems:
            print(f"{args.file}: not signed, the message is invalid:")
            for problem in problems:
                print(f"  {problem.field}: {problem.message}")
            return 1
        signed = dialect.sign_document(data, signer)
    except ProtocolError as exc:
        print(f"{args.file}: not signed: {exc}")
        return 1
    if args.output:
        args.output.write_bytes(signed)
        print(f"signed {args.file} -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(signed)
    return 0


def verify(args: argparse.Namespace) -> int:
    """Check the signature with the pinned certificate, then the content."""
    data, dialect = _read(args.file), _dialect(args.dialect)
    if data is None or dialect is None:
        return 2
    try:
        verifier = Verifier(load_certificate(args.cert))
    except (PkiError, ProtocolError) as exc:
        print(f"tgw message: {exc}", file=sys.stderr)
        return 2
    try:
        dialect.verify_document(data, verifier)
    except SignatureMissing as exc:
        print(f"{args.file}: NOT VERIFIED: no signature ({exc})")
        return 1
    except SignatureError as exc:
        print(f"{args.file}: NOT VERIFIED: {exc}")
        return 1
    except ProtocolError as exc:
        print(f"{args.file}: NOT VERIFIED, unreadable: {exc}")
        return 1
    try:
        problems = dialect.check(data)
    except ProtocolError as exc:
        problems = list(getattr(exc, "problems", ())) or []
        if not problems:
            print(f"{args.file}: signature valid, but the message is invalid: {exc}")
            return 1
    if problems:
        print(f"{args.file}: signature valid, but the message is invalid:")
        for problem in problems:
            print(f"  {problem.field}: {problem.message}")
        return 1
    print(
        f"{args.file}: signature valid (signed by {load_certificate(args.cert).subject.rfc4514_string()}); "
        "message valid"
    )
    return 0
