"""Certificates and keys for the local control plane and for test webhook servers.

Everything is made in-process with `cryptography` so tests need no openssl binary. Keys are ECDSA
P-256: generating them is instant, and both Go (kube-apiserver, etcd, kubectl) and Python's ssl
module accept them.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "KeyPair",
    "generate_service_account_keys",
    "private_key_pem",
    "public_key_pem",
]

# Certificates are only used by short-lived local clusters; a year avoids any expiry surprise for
# a `make cluster-up` left running, without pretending to be a production PKI.
_VALIDITY = _dt.timedelta(days=365)
# Clocks of the processes that check certificates can lag a little behind ours.
_BACKDATE = _dt.timedelta(minutes=5)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PEM of a private key in PKCS#8, unencrypted (what Go's tls.LoadX509KeyPair expects)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PEM of the public half of a private key (SubjectPublicKeyInfo)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def _write(path: Path, data: bytes, *, secret: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
    return path


@dataclass(frozen=True)
class KeyPair:
    """A certificate with its private key; `cert_pem`/`key_pem` are ready to write or embed."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    def write(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        """Write the certificate and key as PEM files (the key readable by the owner only)."""
        return _write(cert_path, self.cert_pem, secret=False), _write(key_path, self.key_pem, secret=True)


def _subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates.

    >>> ca = CertificateAuthority("test-ca")
    >>> serving = ca.issue_server("webhook", ["127.0.0.1", "localhost"])
    >>> admin = ca.issue_client("admin", groups=["system:masters"])
    """

    def __init__(self, common_name: str) -> None:
        self.key = _new_key()
        now = _dt.datetime.now(_dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM: what goes into a kubeconfig or a webhook's caBundle."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, cert_path: Path) -> Path:
        """Write the CA certificate (not its key: nothing outside this process needs to sign)."""
        return _write(cert_path, self.cert_pem, secret=False)

    def _issue(
        self,
        subject: x509.Name,
        usages: Sequence[x509.ObjectIdentifier],
        sans: list[x509.GeneralName],
    ) -> KeyPair:
        key = _new_key()
        now = _dt.datetime.now(_dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return KeyPair(cert=builder.sign(self.key, hashes.SHA256()), key=key)

    def issue_server(self, common_name: str, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> KeyPair:
        """A TLS serving certificate; `hosts` become SANs (IP addresses or DNS names).

        Go ignores the common name when checking a host, so the SANs are what matter: the
        kube-apiserver calling `https://127.0.0.1:PORT` needs the IP SAN 127.0.0.1.
        """
        if not hosts:
            raise ValueError("a serving certificate needs at least one host (SAN)")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(subject, [ExtendedKeyUsageOID.SERVER_AUTH], _subject_alt_names(hosts))

    def issue_client(self, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A TLS client certificate: Kubernetes reads the user from CN and groups from O."""
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(x509.Name(attributes), [ExtendedKeyUsageOID.CLIENT_AUTH], [])


def generate_service_account_keys(private_path: Path, public_path: Path) -> tuple[Path, Path]:
    """Write a service-account token signing key (private) and its verification key (public).

    The apiserver signs tokens with the private key (ES256 for an ECDSA key) and verifies them
    with the public one.
    """
    key = _new_key()
    return (
        _write(private_path, private_key_pem(key), secret=True),
        _write(public_path, public_key_pem(key), secret=False),
    )
