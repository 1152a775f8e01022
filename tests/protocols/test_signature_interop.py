"""Interoperability of the PROTOCOL.md §6 profile with independent implementations: xmlsec1 and signxml.

xmlsec1 verifies with the pinned certificate only: ``--pubkey-cert-pem`` loads it, and ``--enabled-key-data
rsa,ecdsa`` switches off the ``x509`` key data so that the certificate in ``KeyInfo`` is not used (nor checked
against a trust store); ``--enabled-reference-uris empty`` allows nothing but ``URI=""``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import signxml
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLSigner, XMLVerifier

from protocols import xmlsafe
from protocols.signature import DS_NS, ECDSA_SHA256, ENVELOPED_SIGNATURE, EXC_C14N, RSA_SHA256, SHA256, Signer, Verifier
from tests.vectors.attacks.generate import ATTACKS, XMLSEC1_ACCEPTS, Keys, message

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed"),
]

ENCODINGS = ["UTF-8", "GBK"]
PAYEE = "广西某某建设有限公司"
NAMESPACED = (
    '<?xml version="1.0" encoding="{encoding}"?>\n'
    '<Message xmlns="urn:treasury" xmlns:x="urn:ext" x:v="1">\n'
    "  <Head><Ver>1.0</Ver></Head>\n"
    "  <Body><x:Voucher><PayeeAcctName>广西某某建设有限公司</PayeeAcctName></x:Voucher></Body>\n"
    "</Message>\n"
)


def documents(encoding: str) -> list[bytes]:
    """The sample message and one with a default namespace and other declarations on the root."""
    return [message(encoding), NAMESPACED.format(encoding=encoding).encode(encoding)]


def c14n(root: etree._Element) -> bytes:
    return etree.tostring(root, method="c14n", exclusive=True)


def pem_files(keys: Keys, directory: Path) -> tuple[Path, Path]:
    """Write `keys` as PEM files (PKCS#8 key, certificate) for xmlsec1."""
    key, cert = directory / f"{keys.kind}-key.pem", directory / f"{keys.kind}-cert.pem"
    key.write_bytes(keys.key_pem())
    cert.write_bytes(keys.cert_pem())
    return key, cert


def xmlsec1_verify(document: bytes, cert: Path, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``xmlsec1 --verify`` with the pinned certificate on `document`."""
    path = directory / "signed.xml"
    path.write_bytes(document)
    uris = extra or ("--enabled-reference-uris", "empty")
    command = [
        "xmlsec1",
        "--verify",
        "--pubkey-cert-pem",
        str(cert),
        "--enabled-key-data",
        "rsa,ecdsa",
        *uris,
        str(path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def template(method: str, prefix: str) -> bytes:
    """An xmlsec1 signature template of the profile, indented as xmlsec1's own examples are."""
    p = f"{prefix}:" if prefix else ""
    declaration = f'xmlns:{prefix}="{DS_NS}"' if prefix else f'xmlns="{DS_NS}"'
    return f"""<{p}Signature {declaration}>
  <{p}SignedInfo>
    <{p}CanonicalizationMethod Algorithm="{EXC_C14N}"/>
    <{p}SignatureMethod Algorithm="{method}"/>
    <{p}Reference URI="">
      <{p}Transforms>
        <{p}Transform Algorithm="{ENVELOPED_SIGNATURE}"/>
        <{p}Transform Algorithm="{EXC_C14N}"/>
      </{p}Transforms>
      <{p}DigestMethod Algorithm="{SHA256}"/>
      <{p}DigestValue/>
    </{p}Reference>
  </{p}SignedInfo>
  <{p}SignatureValue/>
  <{p}KeyInfo><{p}X509Data/></{p}KeyInfo>
</{p}Signature>""".encode()


def method_of(keys: Keys) -> str:
    return RSA_SHA256 if keys.kind == "rsa" else ECDSA_SHA256


# --- xmlsec1 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_xmlsec1_verifies_what_we_sign(keys: Keys, encoding: str, tmp_path: Path) -> None:
    """xmlsec1 --verify accepts our signatures with the pinned certificate, and refuses them altered."""
    _, cert = pem_files(keys, tmp_path)
    for document in documents(encoding):
        signed = Signer(keys.key, keys.cert).sign_bytes(document)
        result = xmlsec1_verify(signed, cert, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout + result.stderr
        tampered = signed.replace(PAYEE.encode(encoding), "广西另一家公司".encode(encoding))
        assert xmlsec1_verify(tampered, cert, tmp_path).returncode != 0


def test_xmlsec1_refuses_our_signature_with_another_certificate(
    keys: Keys, other_keys: dict[str, Keys], tmp_path: Path
) -> None:
    """xmlsec1 uses the given certificate, not the one in KeyInfo (so the command line above is meaningful)."""
    _, other_cert = pem_files(other_keys[keys.kind], tmp_path)
    signed = Signer(keys.key, keys.cert).sign_bytes(message())
    assert xmlsec1_verify(signed, other_cert, tmp_path).returncode != 0


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("prefix", ["", "ds"], ids=["default-namespace", "ds-prefix"])
def test_we_verify_what_xmlsec1_signs(keys: Keys, encoding: str, prefix: str, tmp_path: Path) -> None:
    """Our verifier accepts xmlsec1 --sign output (indented SignedInfo, wrapped base64, text after it)."""
    key, cert = pem_files(keys, tmp_path)
    for document in documents(encoding):
        unsigned = document.replace(b"</Message>", b"\n</Message>")
        (tmp_path / "template.xml").write_bytes(
            document.replace(b"</Message>", template(method_of(keys), prefix) + b"\n</Message>")
        )
        output, source = tmp_path / "out.xml", tmp_path / "template.xml"
        subprocess.run(
            ["xmlsec1", "--sign", "--privkey-pem", f"{key},{cert}", "--output", str(output), str(source)],
            capture_output=True,
            check=True,
            timeout=60,
        )
        signed = output.read_bytes()
        assert b"<SignatureValue>" in signed or b"<ds:SignatureValue>" in signed
        root = Verifier(keys.cert).verify_bytes(signed)
        assert c14n(root) == c14n(xmlsafe.parse_document(unsigned))
        assert PAYEE in etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize("name", sorted(XMLSEC1_ACCEPTS))
def test_xmlsec1_accepts_the_forgeries_we_refuse(
    name: str, rsa_keys: Keys, other_keys: dict[str, Keys], tmp_path: Path
) -> None:
    """These corpus signatures are cryptographically valid; only the profile of PROTOCOL.md §6 refuses them."""
    attack = next(attack for attack in ATTACKS if attack.name == name)
    document = attack.build(rsa_keys, other_keys["rsa"])
    _, cert = pem_files(rsa_keys, tmp_path)
    uris = ("--enabled-reference-uris", "empty,same-doc", "--id-attr:Id", "Body")
    result = xmlsec1_verify(document, cert, tmp_path, *uris)
    assert result.returncode == 0, result.stderr
    with pytest.raises(attack.expected):
        Verifier(rsa_keys.cert).verify_bytes(document)


# --- signxml ----------------------------------------------------------------------------------------------


def signxml_config(keys: Keys) -> SignatureConfiguration:
    """signxml's expectations set to the profile: the signature a child of the root, one method, SHA-256."""
    method = SignatureMethod.RSA_SHA256 if keys.kind == "rsa" else SignatureMethod.ECDSA_SHA256
    return SignatureConfiguration(
        location="./", signature_methods=frozenset({method}), digest_algorithms=frozenset({DigestAlgorithm.SHA256})
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("include_cert", [True, False])
def test_signxml_verifies_what_we_sign(keys: Keys, encoding: str, include_cert: bool) -> None:
    """signxml's XMLVerifier, given the certificate, accepts our signatures and sees the same signed data."""
    for document in documents(encoding):
        signed = Signer(keys.key, keys.cert, include_cert=include_cert).sign_bytes(document)
        result = XMLVerifier().verify(signed, x509_cert=keys.cert_pem().decode(), expect_config=signxml_config(keys))
        assert c14n(result.signed_xml) == c14n(xmlsafe.parse_document(document))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_we_verify_what_signxml_signs(keys: Keys, encoding: str) -> None:
    """signxml 5's enveloped exc-C14N SHA-256 output (ds: prefix) is exactly our profile."""
    algorithm = "rsa-sha256" if keys.kind == "rsa" else "ecdsa-sha256"
    for document in documents(encoding):
        signer = XMLSigner(
            method=signxml.methods.enveloped,
            signature_algorithm=algorithm,
            digest_algorithm="sha256",
            c14n_algorithm=EXC_C14N,
        )
        signed_root = signer.sign(xmlsafe.parse_document(document), key=keys.key, cert=keys.cert_pem().decode())
        signed = etree.tostring(signed_root, encoding=encoding, xml_declaration=True)
        transforms = signed_root.findall(f".//{{{DS_NS}}}Transform")
        assert [t.get("Algorithm") for t in transforms] == [ENVELOPED_SIGNATURE, EXC_C14N]
        root = Verifier(keys.cert).verify_bytes(signed)
        assert c14n(root) == c14n(xmlsafe.parse_document(document))
