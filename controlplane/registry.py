"""A local OCI registry (the CNCF distribution registry, Debian's `docker-registry`) for node tests.

It listens on a free loopback port with TLS (its own CA, so clients must be told to trust it) and
htpasswd basic auth, like the private registry an organisation points the webhook at. Tests push
images into it with skopeo and read its log to prove which user pulled which manifest:

>>> with Registry(users={"puller": "s3cret"}) as registry:
...     registry.push(oci_source, "chaos/busybox:1.36")
...     ... # a pod pulls registry.host + "/chaos/busybox:1.36" with a pull secret
...     assert registry.pulls(user="puller")

The registry logs JSON (one object a line); `requests()` turns that log into `RegistryRequest`s.
The process dies with the Python process that started it (unless `detached`).
"""

from __future__ import annotations

import atexit
import base64
import http.client
import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from controlplane.certs import CertificateAuthority
from controlplane.cluster import ControlPlaneError, _die_with_parent_hook, _Process, _tail

__all__ = [
    "DEFAULT_USER",
    "Registry",
    "RegistryError",
    "RegistryRequest",
    "parse_registry_log",
]

#: The user `Registry()` creates when given no users (a random password each start).
DEFAULT_USER = "puller"

_HOST = "127.0.0.1"
_STATE_FILE = "registry.json"
# /v2/<name>/<kind>/<reference>: the name may itself contain slashes.
_URI = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs|tags)/(?P<reference>[^/?]+)")
_AUTH_FAILED_USER = re.compile(r'error authenticating user "(?P<user>[^"]*)"')


class RegistryError(ControlPlaneError):
    """The registry could not start, or a push into it failed; the message says which and why."""


@dataclass(frozen=True)
class RegistryRequest:
    """One request the registry answered, from its log.

    `kind` is `manifests`, `blobs` or `tags` (None for `/v2/` itself); `repository` and
    `reference` (a tag or a digest) come from the URL. `user` is the htpasswd user that
    authenticated, or the user name a failed login claimed (`status` 401), or None.
    """

    method: str
    uri: str
    status: int
    user: str | None
    repository: str | None
    kind: str | None
    reference: str | None
    error: str | None
    time: str

    @property
    def image(self) -> str | None:
        """`repository:tag` or `repository@digest` of a manifest request, else None."""
        if self.kind != "manifests" or self.repository is None or self.reference is None:
            return None
        separator = "@" if ":" in self.reference else ":"
        return f"{self.repository}{separator}{self.reference}"


def parse_registry_log(text: str) -> list[RegistryRequest]:
    """The answered requests in a registry log written with `log.formatter: json`.

    A completed request logs `http.response.status`; a refused login logs no status, only
    "error authorizing context", which is a 401 to the client. The completion line of a
    successful request lacks the user: at level debug, the request's earlier lines carry it
    (`auth.user.name`), matched by request id. Other lines (startup, purges, noise) are skipped.
    """
    found: list[RegistryRequest] = []
    users: dict[str, str] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "http.request.uri" not in entry:
            continue
        message = str(entry.get("msg", ""))
        request_id = str(entry.get("http.request.id", ""))
        claimed = _AUTH_FAILED_USER.search(message)
        if claimed:
            users[request_id] = claimed.group("user")
            continue
        if entry.get("auth.user.name"):
            users.setdefault(request_id, str(entry["auth.user.name"]))
        if "http.response.status" in entry:
            status = int(entry["http.response.status"])
        elif message.startswith("error authorizing context"):
            status = 401
        else:
            continue
        user = users.pop(request_id, None)
        uri = str(entry["http.request.uri"])
        match = _URI.match(uri)
        found.append(
            RegistryRequest(
                method=str(entry.get("http.request.method", "")),
                uri=uri,
                status=status,
                user=str(user) if user else None,
                repository=match.group("name") if match else None,
                kind=match.group("kind") if match else None,
                reference=match.group("reference") if match else None,
                error=str(entry["err.code"]) if "err.code" in entry else None,
                time=str(entry.get("time", "")),
            )
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RegistryError(
            f"{binary} not found on PATH: run `bash controlplane/install-node-deps.sh` (as root)"
        )
    return path


class Registry:
    """A TLS + htpasswd distribution registry on a free loopback port; a context manager.

    `users` maps htpasswd user names to passwords (default: `puller` with a random password).
    `root_dir` (must not exist or be empty) defaults to a new temp folder, removed on stop.
    `detached` processes survive this Python process (for `python -m controlplane up --node`).
    """

    def __init__(
        self,
        root_dir: Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        port: int | None = None,
        detached: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        self._requested_root = root_dir
        self._requested_port = port
        self.users: dict[str, str] = dict(users) if users else {DEFAULT_USER: secrets.token_urlsafe(12)}
        self.detached = detached
        self.startup_timeout = startup_timeout
        self._root: Path | None = None
        self._port: int | None = None
        self._process: _Process | None = None
        self._atexit_registered = False

    # -- paths and addresses ----------------------------------------------------------------------

    @property
    def root_dir(self) -> Path:
        if self._root is None:
            raise RegistryError("the registry is not started: use `with Registry() as registry:`")
        return self._root

    @property
    def port(self) -> int:
        if self._port is None:
            raise RegistryError("the registry is not started: use `with Registry() as registry:`")
        assert self._port is not None
        return self._port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the registry part of image references, e.g. `f"{host}/chaos/x:1"`."""
        return f"{_HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the registry's serving certificate (what pullers must trust)."""
        return self.root_dir / "ca.crt"

    @property
    def cert_dir(self) -> Path:
        """A folder holding only `ca.crt`: what skopeo's `--cert-dir` and containerd's certs.d want."""
        return self.root_dir / "certs"

    @property
    def log_file(self) -> Path:
        return self.root_dir / "registry.log"

    @property
    def user(self) -> str:
        """The first user: the one `push` and `docker_config_json` use unless told otherwise."""
        return next(iter(self.users))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._root is not None:
            raise RegistryError("this Registry is already started: create a new one")
        registry = _require("docker-registry")
        htpasswd = _require("htpasswd")
        self._root = self._make_root()
        try:
            self._write_files(htpasswd)
            for _attempt in range(3):
                self._port = self._requested_port or _free_port()
                self._write_config()
                if self._spawn(registry):
                    break
            else:
                raise RegistryError(f"could not bind a free port on {_HOST} three times in a row")
            if self.detached:
                self._write_state()
        except BaseException:
            self.stop()
            raise
        if not self.detached and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        return self

    def stop(self) -> None:
        """Stop the registry and remove its folder (images included). Safe to call twice."""
        try:
            if self._process is not None:
                self._process.stop(grace=5.0)
                if self._process.popen is not None:
                    self._process.popen.wait()
                self._process = None
        finally:
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def _make_root(self) -> Path:
        if self._requested_root is None:
            return Path(tempfile.mkdtemp(prefix="registry-"))
        root = self._requested_root.resolve()
        if root.exists() and any(root.iterdir()):
            raise RegistryError(f"{root} is not empty: remove it or pick another folder")
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _write_files(self, htpasswd: str) -> None:
        root = self.root_dir
        authority = CertificateAuthority.generate("chaos-registry-test-registry-ca")
        authority.write(self.ca_file)
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.ca_file, self.cert_dir / "ca.crt")
        authority.issue_server("local-registry", [_HOST, "localhost"]).write(
            root / "tls.crt", root / "tls.key"
        )
        lines = []
        for user, password in self.users.items():
            if not user or ":" in user:
                raise RegistryError(f"registry user {user!r} is not a valid htpasswd user name")
            result = subprocess.run(
                [htpasswd, "-nbB", user, password], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise RegistryError(f"htpasswd failed for user {user!r}: {result.stderr.strip()}")
            lines.append(result.stdout.strip())
        (root / "htpasswd").write_text("\n".join(lines) + "\n")

    def _write_config(self) -> None:
        root = self.root_dir
        config = {
            "version": 0.1,
            # JSON lines: `requests()` parses them; the Apache-style access log has no user name,
            # and only debug lines name the user of a successful request.
            "log": {"formatter": "json", "level": "debug", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {
                "addr": f"{_HOST}:{self._port}",
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(root / "tls.crt"), "key": str(root / "tls.key")},
            },
            "auth": {"htpasswd": {"realm": "chaos-registry-test", "path": str(root / "htpasswd")}},
        }
        (root / "config.yml").write_text(yaml.safe_dump(config))

    def _spawn(self, registry: str) -> bool:
        """Start the process and wait until it answers; False if its port was taken meanwhile."""
        self.log_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            popen = subprocess.Popen(
                [registry, "serve", str(self.root_dir / "config.yml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root_dir,
                start_new_session=True,
                preexec_fn=None if self.detached else _die_with_parent_hook(),
            )
        self._process = _Process(
            name="docker-registry", pid=popen.pid, log=self.log_file, marker=str(self.root_dir), popen=popen
        )
        deadline = time.monotonic() + self.startup_timeout
        reason = "not polled yet"
        while time.monotonic() < deadline:
            if not self._process.alive():
                text = _tail(self.log_file)
                self._process = None
                if "address already in use" in text and self._requested_port is None:
                    return False
                raise RegistryError(f"docker-registry exited while starting; last lines of its log:\n{text}")
            status, reason = self._probe()
            if status == 401:  # TLS works and auth is on: ready
                return True
            time.sleep(0.05)
        raise RegistryError(
            f"docker-registry not ready after {self.startup_timeout:.0f}s ({reason}); log:\n"
            f"{_tail(self.log_file)}"
        )

    def _probe(self) -> tuple[int | None, str]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = http.client.HTTPSConnection(_HOST, self.port, context=context, timeout=2)
        try:
            conn.request("GET", "/v2/")
            response = conn.getresponse()
            response.read()
            return response.status, f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            return None, str(exc)
        finally:
            conn.close()

    def ready(self) -> bool:
        return self._process is not None and self._process.alive() and self._probe()[0] == 401

    # -- detached state ------------------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {"port": self.port, "users": self.users, "pid": self.pid}
        path = self.root_dir / _STATE_FILE
        path.write_text(json.dumps(state, indent=2) + "\n")
        path.chmod(0o600)

    @classmethod
    def attach(cls, root_dir: Path) -> Registry | None:
        """The detached registry recorded in `root_dir`, or None if it has no state file."""
        root = root_dir.resolve()
        try:
            state = json.loads((root / _STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{root / _STATE_FILE} is unreadable ({exc}): remove {root}") from exc
        registry = cls(root, users=state["users"], port=int(state["port"]), detached=True)
        registry._root = root
        registry._port = int(state["port"])
        if state.get("pid"):
            registry._process = _Process(
                name="docker-registry", pid=int(state["pid"]), log=root / "registry.log", marker=str(root)
            )
        return registry

    # -- clients ------------------------------------------------------------------------------------

    def credentials(self, user: str | None = None) -> tuple[str, str]:
        name = user or self.user
        if name not in self.users:
            raise RegistryError(f"the registry has no user {name!r} (users: {', '.join(self.users)})")
        return name, self.users[name]

    def docker_config_json(self, user: str | None = None) -> str:
        """The `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` pull Secret for `user`."""
        name, password = self.credentials(user)
        auth = base64.b64encode(f"{name}:{password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"username": name, "password": password, "auth": auth}}})

    def pull_secret(self, name: str, namespace: str, user: str | None = None) -> dict[str, object]:
        """A pull Secret manifest for `user`, ready for `kubectl create -f -` or the Python client."""
        data = base64.b64encode(self.docker_config_json(user).encode()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": namespace},
            "data": {".dockerconfigjson": data},
        }

    def push(self, source: str, image: str, *, user: str | None = None, timeout: float = 120.0) -> str:
        """Copy `source` (a skopeo transport reference, e.g. `oci:/path/layout:tag`) to `image`.

        `image` is `repository:tag` inside this registry (e.g. `chaos/go-runner:3.11.0`); returns
        the full reference `host/repository:tag`.
        """
        skopeo = _require("skopeo")
        name, password = self.credentials(user)
        target = f"{self.host}/{image}"
        result = subprocess.run(
            [
                skopeo, "--insecure-policy", "copy", "--quiet",
                "--dest-creds", f"{name}:{password}",
                "--dest-cert-dir", str(self.cert_dir),
                source, f"docker://{target}",
            ],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise RegistryError(f"skopeo copy {source} -> {target} failed: {result.stderr.strip()}")
        return target

    def push_many(self, source: str, images: Sequence[str], *, user: str | None = None) -> list[str]:
        """`push` of one source under several names: the first alone, the rest in parallel.

        The first push stores the blobs; concurrent uploads of one blob into several repositories
        can still collide in the registry ("blob unknown"), so a failed push is retried.
        """
        if not images:
            return []

        def push_retrying(image: str) -> str:
            for attempt in range(3):
                try:
                    return self.push(source, image, user=user)
                except RegistryError:
                    if attempt == 2:
                        raise
                    time.sleep(0.2)
            raise AssertionError("unreachable")

        first = push_retrying(images[0])
        with ThreadPoolExecutor(max_workers=4) as pool:
            return [first, *pool.map(push_retrying, images[1:])]

    def requests(self) -> list[RegistryRequest]:
        """Every request answered so far (pushes, pulls, refused logins), oldest first."""
        try:
            return parse_registry_log(self.log_file.read_text(errors="replace"))
        except FileNotFoundError:
            return []

    def pulls(self, *, user: str | None = None, image: str | None = None) -> list[RegistryRequest]:
        """Manifest requests answered 200 (pulls that got through), filtered by user and image.

        `image` is `repository:tag` or `repository@digest` without the host, e.g.
        `chaos/go-runner:3.11.0`. containerd resolves a tag with a HEAD, then GETs the manifest
        by digest: the HEAD of the tag is what names the image a pod asked for.
        """
        return [
            request
            for request in self.requests()
            if request.kind == "manifests"
            and request.method in ("GET", "HEAD")
            and request.status == 200
            and (user is None or request.user == user)
            and (image is None or request.image == image)
        ]

    def wait_for_request(
        self, predicate: Callable[[RegistryRequest], bool], timeout: float = 30.0
    ) -> RegistryRequest:
        """The first request matching `predicate`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            for request in self.requests():
                if predicate(request):
                    return request
            if time.monotonic() >= deadline:
                raise RegistryError(f"no matching registry request within {timeout:.0f}s")
            time.sleep(0.2)
