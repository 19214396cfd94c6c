"""The serving SSLContext: certificates from our CA or from users (RSA too), loaded without leftovers."""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from webhook.pki import CertificateAuthority
from webhook.service.tls.certificates import ServingContext


def rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user-provided")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("webhook.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("chaos-registry-tls-*"))


def test_loads_our_ecdsa_certificate_once_and_leaves_no_files() -> None:
    before = tls_folders()
    pair = CertificateAuthority.generate("ca").issue_server("webhook", ["127.0.0.1"])
    serving = ServingContext()
    assert serving.load(pair.cert_pem, pair.key_pem) is True
    assert serving.load(pair.cert_pem, pair.key_pem) is False  # unchanged: not reloaded
    assert serving.loaded and serving.not_after == pair.not_after
    assert serving.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls_folders() == before


def test_loads_a_user_provided_rsa_certificate() -> None:
    cert_pem, key_pem = rsa_pair()
    serving = ServingContext()
    assert serving.load(cert_pem, key_pem) is True


def test_refuses_a_key_that_does_not_match() -> None:
    cert_pem, _ = rsa_pair()
    _, other_key = rsa_pair()
    with pytest.raises(ValueError, match="do not match"):
        ServingContext().load(cert_pem, other_key)
