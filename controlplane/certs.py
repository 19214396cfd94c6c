"""Certificates and keys for the local control plane and for test webhook servers.

The CA itself is the webhook's own (`webhook.pki`): one implementation, made with
`cryptography`, so tests need no openssl binary. This module adds what only a control plane needs.
"""

from __future__ import annotations

from pathlib import Path

from webhook.pki import (
    CertificateAuthority,
    KeyPair,
    new_key,
    private_key_pem,
    public_key_pem,
    write_file,
)

__all__ = [
    "CertificateAuthority",
    "KeyPair",
    "generate_service_account_keys",
    "private_key_pem",
    "public_key_pem",
]


def generate_service_account_keys(private_path: Path, public_path: Path) -> tuple[Path, Path]:
    """Write a service-account token signing key (private) and its verification key (public).

    The apiserver signs tokens with the private key (ES256 for an ECDSA key) and verifies them
    with the public one.
    """
    key = new_key()
    return (
        write_file(private_path, private_key_pem(key), secret=True),
        write_file(public_path, public_key_pem(key), secret=False),
    )
