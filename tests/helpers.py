"""Reusable helpers for tests that talk to a real kube-apiserver.

* `WebhookServer`: a tiny HTTPS admission webhook (http.server in a thread) with its own CA, so
  the apiserver can call it at `https://127.0.0.1:PORT/...` and verify it through `caBundle`.
* `refused_port()`: a loopback port where connections are refused (a webhook that is down).
* `webhook_entry()` / `json_patch_response()`: the YAML-ish dicts the admission API wants.
* `wait_until()`: poll until something holds; the apiserver picks up new webhook configurations
  asynchronously, so the first request after creating one may not see it yet.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from controlplane.certs import CertificateAuthority

T = TypeVar("T")

# A handler gets the AdmissionReview `request` and returns the `response` fields it decides
# (allowed, patch as a list of JSON Patch operations, status...); uid and encoding are filled in.
AdmissionHandler = Callable[[dict[str, Any]], dict[str, Any]]


def allow(_request: dict[str, Any]) -> dict[str, Any]:
    """An admission handler that admits everything unchanged."""
    return {"allowed": True}


def json_patch_response(operations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Response fields that admit the object with a JSON Patch (a list of RFC 6902 operations)."""
    return {"allowed": True, "patch": list(operations)}


def deny_response(message: str, code: int = 403) -> dict[str, Any]:
    return {"allowed": False, "status": {"code": code, "message": message}}


def _encode_response(request: dict[str, Any], decided: dict[str, Any]) -> dict[str, Any]:
    response = {key: value for key, value in decided.items() if key != "patch"}
    response["uid"] = request["uid"]
    if decided.get("patch"):
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(decided["patch"]).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        review = json.loads(self.rfile.read(length))
        request = review["request"]
        # The apiserver appends ?timeout=<timeoutSeconds>s to the configured URL.
        self.server.owner.record(urlsplit(self.path).path, request)
        try:
            decided = self.server.owner.handler(request)
        except Exception as exc:  # surfaced to the apiserver, hence to the test, as a denial
            decided = deny_response(f"test webhook handler raised {exc!r}", code=500)
        body = json.dumps(_encode_response(request, decided)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the apiserver polls a lot; keep test output readable


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebhookServer


class WebhookServer:
    """An HTTPS admission webhook on 127.0.0.1 for the duration of a `with` block.

    >>> with WebhookServer(lambda req: json_patch_response([...])) as hook:
    ...     entry = webhook_entry("mirror.e2e.test", hook.url("/mutate"), hook.ca_bundle, ...)

    `reviews` lists every AdmissionReview request received, as (path, request) pairs; the
    path is without the query string.
    """

    def __init__(self, handler: AdmissionHandler = allow) -> None:
        self.handler = handler
        self.ca = CertificateAuthority.generate("e2e-webhook-ca")
        self._serving = self.ca.issue_server("e2e-webhook", ["127.0.0.1", "localhost"])
        self._reviews: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_bundle(self) -> str:
        """Base64 of the CA certificate, as `clientConfig.caBundle` wants it."""
        return base64.b64encode(self.ca.cert_pem).decode()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("WebhookServer is not started")
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @property
    def reviews(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._reviews)

    def record(self, path: str, request: dict[str, Any]) -> None:
        with self._lock:
            self._reviews.append((path, request))

    def __enter__(self) -> WebhookServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # ssl only loads key pairs from files; they are not needed once loaded.
        with tempfile.TemporaryDirectory(prefix="e2e-webhook-") as tmp:
            cert, key = self._serving.write(Path(tmp) / "tls.crt", Path(tmp) / "tls.key")
            context.load_cert_chain(cert, key)
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="e2e-webhook", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the duration of the block.

    The socket stays bound but never listens, so nobody else can take the port meanwhile and
    every connection attempt gets an immediate RST.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def webhook_entry(
    name: str,
    url: str,
    ca_bundle: str,
    *,
    namespace: str,
    failure_policy: str = "Fail",
    resources: Sequence[str] = ("pods",),
    operations: Sequence[str] = ("CREATE",),
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    """One entry of a MutatingWebhookConfiguration's `webhooks`, limited to one namespace.

    Tests share a control plane, so every webhook selects only its test's namespace (by the
    `kubernetes.io/metadata.name` label the apiserver puts on every namespace).
    """
    return {
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": list(operations),
                "resources": list(resources),
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "failurePolicy": failure_policy,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": timeout_seconds,
    }


def mutating_webhook_configuration(name: str, webhooks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": list(webhooks),
    }


def pod_manifest(name: str, image: str = "busybox:1.36", **labels: str) -> dict[str, Any]:
    """A minimal pod; without a scheduler it stays Pending, which is all admission tests need."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]},
    }


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 15.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns something other than None/False; return that.

    Exceptions from `probe` count as "not yet"; the last one is chained to the timeout error.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except Exception as exc:
            last_error = exc
            result = None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}") from last_error
        time.sleep(interval)


def contract_example() -> dict[str, Any]:
    """The ChaosImageRegistry example of docs/contract.md (its first YAML block): tests check the
    example users read rather than a copy of it."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "contract.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    example: dict[str, Any] = yaml.safe_load(block)
    return example
