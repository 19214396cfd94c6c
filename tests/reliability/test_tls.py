"""TLS 1.2 or newer only on the admission port: 1.0 and 1.1 handshakes fail, 1.2 and 1.3 succeed.

A handshake that fails proves nothing if the client could not have offered the old version in the
first place (OpenSSL 3 disables TLS 1.0/1.1 at its default security level): a control server that
accepts TLS 1.0 shows that this client does speak 1.0 and 1.1.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from controlplane import ControlPlane
from tests.e2e.service.conftest import Cluster
from tests.reliability import figures
from tests.reliability.support import running_webhook
from webhook.pki import CertificateAuthority

SECTION = "TLS versions of the admission port"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    VERSIONS = {
        "TLSv1": ssl.TLSVersion.TLSv1,
        "TLSv1.1": ssl.TLSVersion.TLSv1_1,
        "TLSv1.2": ssl.TLSVersion.TLSv1_2,
        "TLSv1.3": ssl.TLSVersion.TLSv1_3,
    }


def handshake(port: int, version: ssl.TLSVersion, ca_pem: bytes) -> str:
    """Negotiated version (pinned to `version`), or 'refused: <reason>'. Certificate verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer what old servers accept
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            negotiated = tls.version() or "?"
            tls.sendall(
                b"POST /mutate-pods HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            )
            status_line = tls.recv(64).split(b"\r\n", 1)[0].decode()
            return f"{negotiated} ({status_line})"
    except (ssl.SSLError, OSError) as error:
        return f"refused: {error}"


@contextlib.contextmanager
def permissive_server() -> Iterator[tuple[int, bytes]]:
    """A TLS server that accepts TLS 1.0 and newer (the control); yields its port and CA."""
    authority = CertificateAuthority.generate("tls-control")
    pair = authority.issue_server("control", ["127.0.0.1"])
    folder = Path(tempfile.mkdtemp(prefix="tls-control-"))
    cert, key = pair.write(folder / "tls.crt", folder / "tls.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with (
                contextlib.suppress(ssl.SSLError, OSError),
                context.wrap_socket(conn, server_side=True) as tls,
            ):
                tls.recv(1024)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], authority.cert_pem
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_admission_port_refuses_tls_below_1_2(
    control_plane: ControlPlane, cluster: Cluster, log_dir: Path
) -> None:
    with permissive_server() as (port, ca):
        control = {name: handshake(port, version, ca) for name, version in VERSIONS.items()}
    assert all(result.startswith(name) for name, result in control.items()), (
        f"this client cannot speak every version, so refusals would prove nothing: {control}"
    )
    with running_webhook(control_plane, log_dir) as webhook:
        assert webhook.process is not None
        ca_bundle = webhook.ca_bundle()
        results = {
            name: handshake(webhook.process.port, version, ca_bundle) for name, version in VERSIONS.items()
        }
        assert webhook.alive()
    assert results["TLSv1"].startswith("refused"), results
    assert results["TLSv1.1"].startswith("refused"), results
    assert results["TLSv1.2"].startswith("TLSv1.2 (HTTP/1.1 400"), results
    assert results["TLSv1.3"].startswith("TLSv1.3 (HTTP/1.1 400"), results
    for name, result in results.items():
        figures.record(SECTION, name, result.split(":", 1)[0].split(" (", 1)[0])
    figures.record(SECTION, "inputs_tried", len(results) + len(control))
