"""The Bearer-token flow of `chaos-registry check` against the real distribution registry with token
auth: the registry answers 401 with a `Bearer realm=...` challenge, the client fetches a token from
the realm with the pull secret's credentials, and retries with it. The token service is a small
real one (JWTs signed with a key the registry trusts), as a registry's auth server would be."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from controlplane.images import TestImages
from controlplane.registry import Registry
from webhook.cli.main import main

USER, PASSWORD = "puller", "pull-s3cret"
SERVICE, ISSUER = "chaos-test-registry", "chaos-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens (RS256 JWT with the certificate in x5c) for the users it knows."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.requests: list[tuple[str | None, str]] = []  # (user, scope) of each token request

    def token(self, user: str, scope: str) -> str:
        access = []
        if scope.startswith("repository:"):
            _, name, actions = scope.split(":")
            access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        now = int(dt.datetime.now(dt.UTC).timestamp())
        header = {
            "alg": "RS256",
            "typ": "JWT",
            "x5c": [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[TokenIssuer, str]]:
    tokens = TokenIssuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            scope = (query.get("scope") or [""])[0]
            header = self.headers.get("Authorization", "")
            user = None
            if header.startswith("Basic "):
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                user = name if (name, password) == (USER, PASSWORD) else None
                if user is None:
                    tokens.requests.append((name, scope))
                    self.send_response(401)
                    self.end_headers()
                    return
            tokens.requests.append((user, scope))
            # Anonymous: a token without access, as Docker Hub's service gives one.
            body = json.dumps({"token": tokens.token(user or "", scope if user else "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tokens, f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


class TokenRegistry(Registry):
    """The test registry with token auth instead of htpasswd."""

    def __init__(self, issuer: TokenIssuer, realm: str) -> None:
        super().__init__(users={USER: PASSWORD})
        self.issuer, self.realm = issuer, realm

    def _write_config(self) -> None:
        super()._write_config()
        bundle = self.root_dir / "token-ca.crt"
        bundle.write_bytes(self.issuer.certificate.public_bytes(serialization.Encoding.PEM))
        path = self.root_dir / "config.yml"
        config = yaml.safe_load(path.read_text())
        config["auth"] = {
            "token": {
                "realm": self.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(bundle),
            }
        }
        path.write_text(yaml.safe_dump(config))


def test_check_follows_the_bearer_token_flow_with_the_pull_secret(
    issuer: tuple[TokenIssuer, str], test_images: TestImages, tmp_path: Path
):
    tokens, realm = issuer
    with TokenRegistry(tokens, realm) as registry:
        registry.push(test_images.busybox, "mirror/chaos-ddcr:1.0.0")
        host = registry.host
        defaults = {
            "releases": {
                "hce": {
                    "version": "1.0.0",
                    "images": [
                        "docker.io/harness/chaos-ddcr:{version}",
                        "docker.io/harness/chaos-log-watcher:{version}",
                    ],
                }
            }
        }
        documents: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "chaos-registry-defaults"},
                "data": {"config.yaml": yaml.safe_dump(defaults)},
            },
        ]
        for scope, secret in (("good", "pull"), ("wrong", "wrong-pull")):
            documents.append(
                {
                    "apiVersion": "chaosregistry.io/v1alpha1",
                    "kind": "ChaosImageRegistry",
                    "metadata": {"name": scope},
                    "spec": {
                        "scope": {"account": scope},
                        "registry": {
                            "server": host,
                            "account": "mirror",
                            "type": "Private",
                            "secretName": secret,
                        },
                    },
                }
            )
        (tmp_path / "config.yaml").write_text(yaml.safe_dump_all(documents))
        secrets_docs = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": name, "namespace": "chaos-system"},
                "stringData": {
                    ".dockerconfigjson": json.dumps(
                        {"auths": {host: {"username": USER, "password": password}}}
                    )
                },
            }
            for name, password in (("pull", PASSWORD), ("wrong-pull", "not-it"))
        ]
        (tmp_path / "secrets.yaml").write_text(yaml.safe_dump_all(secrets_docs))
        tokens.requests.clear()

        out, err = io.StringIO(), io.StringIO()
        code = main(
            [
                "check",
                "-c",
                str(tmp_path / "config.yaml"),
                "--secrets",
                str(tmp_path / "secrets.yaml"),
                "--ca-file",
                str(registry.ca_file),
                "--release",
                "hce",
                "-o",
                "json",
            ],
            out,
            err,
        )

        assert code == 1, err.getvalue()
        outcomes = {
            s["scope"]: {i["image"]: i["outcome"] for i in s["images"]}
            for s in json.loads(out.getvalue())["scopes"]
        }
        assert outcomes == {
            "good": {
                f"{host}/mirror/chaos-ddcr:1.0.0": "present",
                f"{host}/mirror/chaos-log-watcher:1.0.0": "missing",
            },
            "wrong": {
                f"{host}/mirror/chaos-ddcr:1.0.0": "unauthorized",
                f"{host}/mirror/chaos-log-watcher:1.0.0": "unauthorized",
            },
        }
        # One token request per repository and credential (the refused ones too), for pull only.
        scopes = [f"repository:mirror/{name}:pull" for name in ("chaos-ddcr", "chaos-log-watcher")]
        assert sorted(tokens.requests) == sorted([(USER, scope) for scope in scopes] * 2)
