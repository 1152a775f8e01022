"""Signature schemes of the dialects with independent implementations: xmlsec1 for XMLDSig, openssl for the
detached schemes, in both directions (they verify what we sign; we verify what they sign)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from banks import registry
from banks.declarative import DeclarativeDialect
from banks.dialect import Dialect
from banks.signing import SCHEME_NAMES, make_scheme
from banks.signing.detached import DetachedSignature
from banks.signing.xmldsig import EnvelopedXmlDsig
from protocols.signature import Verifier
from tests.banks.support import DECLARED, VECTORS, keys_for, sample_messages, signer_verifier
from tests.vectors.attacks.generate import Keys


def scheme_name(dialect: Dialect) -> str:
    """The dialect's signature scheme (the standard's is XMLDSig)."""
    return dialect.scheme.name if isinstance(dialect, DeclarativeDialect) else EnvelopedXmlDsig.name


def element_of(dialect: DeclarativeDialect) -> str:
    assert isinstance(dialect.scheme, DetachedSignature)
    return dialect.scheme.element


XMLDSIG = [d for d in registry.DIALECTS.values() if scheme_name(d) == EnvelopedXmlDsig.name]
DETACHED = [d for d in DECLARED.values() if isinstance(d.scheme, DetachedSignature)]


def test_scheme_factory() -> None:
    """Schemes are chosen by name; a detached one needs its element, XMLDSig takes none."""
    assert {"xmldsig-enveloped", "rsa-sha256-detached", "ecdsa-p256-detached"} == SCHEME_NAMES
    assert isinstance(
        make_scheme("ecdsa-p256-detached", dialect="x", root="r", head="h", element="s"), DetachedSignature
    )
    for name, element, message in (
        ("pgp", None, "unknown signature scheme"),
        ("xmldsig-enveloped", "s", "takes no element"),
        ("rsa-sha256-detached", None, "needs the head element"),
    ):
        with pytest.raises(ValueError, match=message):
            make_scheme(name, dialect="x", root="r", head="h", element=element)


def test_every_scheme_is_used_by_a_registered_dialect() -> None:
    used = {scheme_name(d) for d in registry.DIALECTS.values()}
    assert used == SCHEME_NAMES


# --- xmlsec1 --------------------------------------------------------------------------------------------------


def pem_files(keys: Keys, directory: Path) -> tuple[Path, Path]:
    key, cert = directory / f"{keys.kind}-key.pem", directory / f"{keys.kind}-cert.pem"
    key.write_bytes(keys.key_pem())
    cert.write_bytes(keys.cert_pem())
    return key, cert


def xmlsec1_verify(document: bytes, cert: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    """``xmlsec1 --verify`` with the pinned certificate only, and nothing but ``URI=""`` references."""
    path = directory / "signed.xml"
    path.write_bytes(document)
    command = ["xmlsec1", "--verify", "--pubkey-cert-pem", str(cert), "--enabled-key-data", "rsa,ecdsa"]
    command += ["--enabled-reference-uris", "empty", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


needs_xmlsec1 = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed")


@pytest.mark.interop
@needs_xmlsec1
@pytest.mark.parametrize("dialect", XMLDSIG, ids=lambda d: d.code)
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_xmlsec1_verifies_what_xmldsig_dialects_sign(
    dialect: DeclarativeDialect, kind: str, bank_keys: dict[str, Keys], tmp_path: Path
) -> None:
    """Every sample signed in an XMLDSig dialect (its own encoding and names) passes xmlsec1; altered, it fails."""
    keys = bank_keys[kind]
    signer, _ = signer_verifier(keys)
    _, cert = pem_files(keys, tmp_path)
    for name, message in sample_messages(dialect)[::4]:
        signed = dialect.encode(message, signer)
        result = xmlsec1_verify(signed, cert, tmp_path)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        tampered = signed.replace(b"20261123", b"20261124", 1)
        assert xmlsec1_verify(tampered, cert, tmp_path).returncode != 0


@pytest.mark.interop
@needs_xmlsec1
@pytest.mark.parametrize("dialect", [d for d in XMLDSIG if isinstance(d, DeclarativeDialect)], ids=lambda d: d.code)
def test_we_verify_what_xmlsec1_signs(dialect: DeclarativeDialect, bank_keys: dict[str, Keys], tmp_path: Path) -> None:
    """A golden document with an xmlsec1-made signature (from a template of the profile) verifies and decodes."""
    keys = bank_keys["rsa"]
    key, cert = pem_files(keys, tmp_path)
    name, message = sample_messages(dialect)[7]
    golden = (VECTORS / dialect.code / f"{name}.xml").read_bytes()
    template = (
        b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>'
        b'<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        b'<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        b'<Reference URI=""><Transforms>'
        b'<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        b'<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms>'
        b'<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference>'
        b"</SignedInfo><SignatureValue/></Signature>"
    )
    end = f"</{dialect.declaration.root}>".encode()
    source, output = tmp_path / "template.xml", tmp_path / "signed.xml"
    source.write_bytes(golden.replace(end, template + end))
    command = ["xmlsec1", "--sign", "--privkey-pem", f"{key},{cert}", "--output", str(output), str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    assert dialect.decode(output.read_bytes(), Verifier(keys.cert)).message == message


# --- openssl for the detached schemes -------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def detached_value(document: bytes, element: str) -> tuple[bytes, bytes]:
    """(the signature value, the bytes it covers) of a detached-signed document."""
    start = document.index(f"<{element}>".encode())
    end = document.index(f"</{element}>".encode()) + len(element) + 3
    value = base64.b64decode(document[start + len(element) + 2 : end - len(element) - 3])
    return value, document[:start] + document[end:]


def to_der(value: bytes, kind: str) -> bytes:
    """openssl reads ECDSA values in DER; ours are the raw r || s."""
    if kind == "rsa":
        return value
    return encode_dss_signature(int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big"))


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("dialect", DETACHED, ids=lambda d: d.code)
def test_openssl_verifies_what_detached_dialects_sign(
    dialect: DeclarativeDialect, bank_keys: dict[str, Keys], tmp_path: Path
) -> None:
    """`openssl dgst -sha256 -verify` accepts the value over the document without its signature element, which
    is the golden file byte for byte; one changed byte and it refuses."""
    keys = keys_for(dialect, bank_keys)
    signer, _ = signer_verifier(keys)
    element = element_of(dialect)
    public = tmp_path / "public.pem"
    public.write_bytes(
        subprocess.run(
            ["openssl", "x509", "-pubkey", "-noout"], input=keys.cert_pem(), capture_output=True, check=True
        ).stdout
    )
    for name, message in sample_messages(dialect)[::5]:
        value, covered = detached_value(dialect.encode(message, signer), element)
        assert covered == (VECTORS / dialect.code / f"{name}.xml").read_bytes()
        (tmp_path / "signature.bin").write_bytes(to_der(value, keys.kind))
        for data, ok in ((covered, True), (covered.replace(b"2026", b"2027", 1), False)):
            (tmp_path / "data.xml").write_bytes(data)
            command = [
                "openssl",
                "dgst",
                "-sha256",
                "-verify",
                str(public),
                "-signature",
                str(tmp_path / "signature.bin"),
            ]
            result = subprocess.run([*command, str(tmp_path / "data.xml")], capture_output=True, check=False)
            assert (result.returncode == 0) is ok, result.stdout + result.stderr


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("dialect", DETACHED, ids=lambda d: d.code)
def test_we_verify_what_openssl_signs(dialect: DeclarativeDialect, bank_keys: dict[str, Keys], tmp_path: Path) -> None:
    """A bank developer's way: sign the unsigned golden file with `openssl dgst -sha256 -sign`, put the base64
    value into the head's signature element, and the gateway verifies and decodes it."""
    keys = keys_for(dialect, bank_keys)
    key, _ = pem_files(keys, tmp_path)
    element = element_of(dialect)
    name, message = sample_messages(dialect)[10]
    golden = VECTORS / dialect.code / f"{name}.xml"
    der = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key), str(golden)], capture_output=True, check=True
    ).stdout
    if keys.kind == "ec":
        r, s = decode_dss_signature(der)
        der = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    head_end = f"</{dialect.declaration.head}>".encode()
    document = golden.read_bytes()
    at = document.index(head_end)
    while document[at - 1 : at] in (b" ", b"\n"):
        at -= 1
    signed = document[:at] + f"<{element}>".encode() + base64.b64encode(der) + f"</{element}>".encode() + document[at:]
    assert dialect.decode(signed, Verifier(keys.cert)).message == message
