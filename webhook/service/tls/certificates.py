"""The serving certificate: loaded into one SSLContext that is reloaded in place.

`SSLContext.load_cert_chain` on the live context affects new handshakes only, so a rotation drops
no request: open connections finish on the old certificate, which the caBundle still trusts.

Two sources: files given by the user (cert-manager mounts them) polled for changes, or a
self-managed CA and certificate kept in a Secret that every replica shares and any replica renews
well before expiry (writes are guarded by resourceVersion, so replicas never fight).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import shutil
import ssl
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from webhook.core.models import MANAGED_BY_LABEL, MANAGER
from webhook.pki import CertificateAuthority, KeyPair
from webhook.service import metrics
from webhook.service.kube.errors import status_of
from webhook.service.kube.resources import Resources, core_path

logger = logging.getLogger("webhook.certs")

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY, CA_BUNDLE = "ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"


class ServingContext:
    """The server's SSLContext (TLS 1.2 or newer) and the certificate currently loaded in it."""

    def __init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.fingerprint: str | None = None
        self.not_after: dt.datetime | None = None

    @property
    def loaded(self) -> bool:
        return self.fingerprint is not None

    def load(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Load a new certificate; False when it is the one already loaded."""
        fingerprint = hashlib.sha256(cert_pem + key_pem).hexdigest()
        if fingerprint == self.fingerprint:
            return False
        pair = KeyPair.from_pem(cert_pem, key_pem)
        # load_cert_chain reads files only: written to a private folder, removed once loaded, so no
        # key stays on disk and no folder piles up in /tmp.
        folder = Path(tempfile.mkdtemp(prefix="chaos-registry-tls-"))
        try:
            cert_path, key_path = pair.write(folder / "tls.crt", folder / "tls.key")
            self.context.load_cert_chain(cert_path, key_path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.fingerprint = fingerprint
        self.not_after = pair.not_after
        metrics.CERTIFICATE_EXPIRY.set(pair.not_after.timestamp())
        logger.info(
            "serving certificate loaded (expires %s, hosts %s)",
            pair.not_after.isoformat(),
            sorted(pair.hosts()),
        )
        return True


@dataclass
class FileCertificates:
    """A certificate and key given as files (cert-manager or the user), reloaded when they change."""

    serving: ServingContext
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    interval: float = 10.0

    def load(self) -> bool:
        try:
            return self.serving.load(self.cert_file.read_bytes(), self.key_file.read_bytes())
        except (OSError, ValueError) as error:
            if not self.serving.loaded:
                raise CertificateError(f"cannot load --tls-cert-file/--tls-key-file: {error}") from None
            # cert-manager writes the two files one after the other: retry on the next poll.
            logger.warning("certificate files changed but cannot be loaded yet: %s", error)
            return False

    def ca_bundle(self) -> bytes | None:
        return self.ca_file.read_bytes() if self.ca_file is not None else None

    async def run(self, on_change: Callable[[bytes | None], None] | None = None) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.load() and on_change is not None:
                on_change(self.ca_bundle())


class CertificateError(RuntimeError):
    """The serving certificate cannot be had; the message says what to fix."""


@dataclass
class SecretCertificates:
    """A self-managed CA and serving certificate in a Secret shared by all replicas."""

    serving: ServingContext
    api: client.ApiClient
    namespace: str
    secret_name: str
    hosts: Sequence[str]
    cert_validity: dt.timedelta = dt.timedelta(days=365)
    ca_validity: dt.timedelta = dt.timedelta(days=3650)
    interval: float = 60.0
    ca_bundle_value: bytes | None = None

    def renew_before(self, validity: dt.timedelta) -> dt.timedelta:
        """Renew when a third of the lifetime is left: months ahead for real validities."""
        return validity / 3

    def _due(self, pair: KeyPair, validity: dt.timedelta, now: dt.datetime) -> bool:
        return pair.not_after - now < self.renew_before(validity)

    def _path(self) -> str:
        return core_path("secrets", self.namespace, self.secret_name)

    def _read(self) -> client.V1Secret | None:
        try:
            secret: client.V1Secret = Resources(self.api).get(self._path(), "V1Secret")
            return secret
        except client.ApiException as error:
            if status_of(error) == 404:
                return None
            raise

    def ensure(self) -> tuple[bytes, bytes, bytes]:
        """Read the Secret, renew what is due, and return (cert, key, caBundle). Blocking: run in a thread."""
        for _attempt in range(5):
            secret = self._read()
            data = {k: base64.b64decode(v) for k, v in ((secret.data if secret else None) or {}).items()}
            now = dt.datetime.now(dt.UTC)
            ca: CertificateAuthority | None = None
            serving: KeyPair | None = None
            try:
                ca = CertificateAuthority(KeyPair.from_pem(data[CA_CERT], data[CA_KEY]))
                serving = KeyPair.from_pem(data[TLS_CERT], data[TLS_KEY])
            except (KeyError, ValueError):
                pass
            old_ca_pem = data.get(CA_CERT) if ca is not None else None
            previous_ca = ca
            renewed = ca_renewed = False
            if ca is None or self._due(ca.pair, self.ca_validity, now):
                ca = CertificateAuthority.generate("chaos-registry-webhook-ca", self.ca_validity)
                renewed = ca_renewed = True
            # A new CA is published in the caBundle before any certificate of it is served: the
            # apiserver verifies new connections against the caBundle it has, which lags behind ours.
            # Until the serving certificate is due anyway it stays the previous CA's, which the
            # bundle keeps trusting.
            signer = ca
            if ca_renewed and previous_ca is not None and previous_ca.pair.not_after > now:
                signer = previous_ca
            if (
                serving is None
                or self._due(serving, self.cert_validity, now)
                or not set(self.hosts) <= serving.hosts()
                or serving.cert.issuer != signer.cert.subject
            ):
                serving = signer.issue_server(self.hosts[0], self.hosts, self.cert_validity)
                renewed = True
            if not renewed:
                return serving.cert_pem, serving.key_pem, data.get(CA_BUNDLE, ca.cert_pem)
            # Trust the earlier CAs too until they expire: this replica or another may still serve a
            # certificate of theirs.
            bundle = _bundle(ca, data.get(CA_BUNDLE, b"") + (old_ca_pem or b""), now)
            new_data = {
                CA_CERT: ca.cert_pem,
                CA_KEY: ca.pair.key_pem,
                TLS_CERT: serving.cert_pem,
                TLS_KEY: serving.key_pem,
                CA_BUNDLE: bundle,
            }
            if self._write(secret, new_data):
                logger.info(
                    "renewed the serving certificate in Secret %s/%s", self.namespace, self.secret_name
                )
                return serving.cert_pem, serving.key_pem, bundle
            # Another replica wrote first: use what it wrote.
        raise CertificateError(
            f"cannot settle Secret {self.namespace}/{self.secret_name}: too many conflicting writers"
        )

    def _write(self, existing: client.V1Secret | None, data: dict[str, bytes]) -> bool:
        resources = Resources(self.api)
        encoded = {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=self.secret_name,
                namespace=self.namespace,
                labels={MANAGED_BY_LABEL: MANAGER},
                resource_version=existing.metadata.resource_version
                if existing and existing.metadata
                else None,
            ),
            type="kubernetes.io/tls",
            data=encoded,
        )
        try:
            if existing is None:
                resources.create(core_path("secrets", self.namespace), body, "V1Secret")
            else:
                resources.replace(self._path(), body, "V1Secret")
        except client.ApiException as error:
            if status_of(error) in (409, 422):
                return False
            raise
        return True

    async def load(self) -> bool:
        """Ensure and load; True when the loaded certificate changed."""
        cert, key, bundle = await asyncio.to_thread(self.ensure)
        self.ca_bundle_value = bundle
        return self.serving.load(cert, key)

    def ca_bundle(self) -> bytes | None:
        return self.ca_bundle_value

    async def run(self, on_change: Callable[[bytes | None], None] | None = None) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.load()
            except Exception:
                logger.exception("certificate check failed; keeping the current certificate")
                continue
            # Called on every check, not only on renewal: it also repairs a caBundle that someone
            # else (a helm upgrade) overwrote.
            if on_change is not None:
                on_change(self.ca_bundle())


def _bundle(ca: CertificateAuthority, earlier_pem: bytes, now: dt.datetime) -> bytes:
    """`ca` first, then every other CA of `earlier_pem` that has not expired."""
    pems = [ca.cert_pem]
    try:
        earlier = x509.load_pem_x509_certificates(earlier_pem) if earlier_pem.strip() else []
    except ValueError:
        earlier = []
    for cert in earlier:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if cert.not_valid_after_utc > now and pem not in pems:
            pems.append(pem)
    return b"".join(pems)
