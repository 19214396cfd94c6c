"""Certificates made with `cryptography`: a small CA that issues serving and client certificates.

Used by the webhook for its self-managed serving certificate, and by the local control plane of
the tests and the demo. Keys are ECDSA P-256: instant to generate, accepted by Go and OpenSSL.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Clocks of the processes that check certificates can lag a little behind ours.
BACKDATE = dt.timedelta(minutes=5)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# Generated keys are ECDSA; keys given by users (cert-manager, files) may also be RSA.
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8, unencrypted: what Go's tls.LoadX509KeyPair and Python's ssl expect."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_file(path: Path, data: bytes, *, secret: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
    return path


def subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class KeyPair:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def hosts(self) -> set[str]:
        """DNS names and IP addresses of the certificate's SANs."""
        try:
            sans = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return set()
        return {str(name) for name in sans.get_values_for_type(x509.DNSName)} | {
            str(address) for address in sans.get_values_for_type(x509.IPAddress)
        }

    def write(self, cert_path: Path, key_path: Path) -> tuple[Path, Path]:
        """Write both as PEM files (the key readable by the owner only)."""
        return write_file(cert_path, self.cert_pem, secret=False), write_file(
            key_path, self.key_pem, secret=True
        )

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        """Load a pair; raises ValueError when either does not parse or they do not match."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("private key is neither ECDSA nor RSA")
        if cert.public_key() != key.public_key():
            raise ValueError("certificate and private key do not match")
        return cls(cert=cert, key=key)


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates."""

    def __init__(self, pair: KeyPair) -> None:
        self.pair = pair

    @classmethod
    def generate(
        cls, common_name: str, validity: dt.timedelta = dt.timedelta(days=365)
    ) -> CertificateAuthority:
        key = new_key()
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(KeyPair(cert=cert, key=key))

    @property
    def cert(self) -> x509.Certificate:
        return self.pair.cert

    @property
    def key(self) -> PrivateKey:
        return self.pair.key

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate: what goes into a kubeconfig or a webhook's caBundle."""
        return self.pair.cert_pem

    def write(self, cert_path: Path) -> Path:
        return write_file(cert_path, self.cert_pem, secret=False)

    def _issue(
        self,
        subject: x509.Name,
        usages: Sequence[x509.ObjectIdentifier],
        sans: list[x509.GeneralName],
        validity: dt.timedelta,
    ) -> KeyPair:
        key = new_key()
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + validity, self.cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return KeyPair(cert=builder.sign(self.key, hashes.SHA256()), key=key)

    def issue_server(
        self,
        common_name: str,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
        validity: dt.timedelta = dt.timedelta(days=365),
    ) -> KeyPair:
        """A TLS serving certificate; `hosts` become SANs (Go checks SANs only, never the CN)."""
        if not hosts:
            raise ValueError("a serving certificate needs at least one host (SAN)")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(subject, [ExtendedKeyUsageOID.SERVER_AUTH], subject_alt_names(hosts), validity)

    def issue_client(
        self, user: str, groups: Sequence[str] = (), validity: dt.timedelta = dt.timedelta(days=365)
    ) -> KeyPair:
        """A TLS client certificate: Kubernetes reads the user from CN and groups from O."""
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(x509.Name(attributes), [ExtendedKeyUsageOID.CLIENT_AUTH], [], validity)
