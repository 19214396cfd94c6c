"""The image's dependency locks match pyproject and are hash-checked; the audit says when it could not run.

Offline: the locks are read, not resolved again (`python -m hack.lock --check` does that with the
package index). The audit tests use a local OSV-compatible endpoint, so both of pip-audit's
outcomes (a vulnerability found, none found) and the unreachable case are exercised for real.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# What hack/lock.py resolves for: the image's Python on Linux.
IMAGE_ENVIRONMENT = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ;(?P<marker>[^\\]+))? \\$")


def read_lock(name: str) -> tuple[dict[str, str], set[str], dict[str, int]]:
    """Pins (name -> version), the names uv says pyproject asked for, and hash counts per pin."""
    pins: dict[str, str] = {}
    roots: set[str] = set()
    hashes: dict[str, int] = {}
    current = ""
    for line in (REPO / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match["name"])
            pins[current] = match["version"]
            hashes[current] = 0
        elif line.strip().startswith("--hash=sha256:"):
            hashes[current] += 1
        elif "pyproject.toml" in line and line.lstrip().startswith("#"):
            roots.add(current)
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{name}: a line that is neither a pin, a hash nor a comment: {line!r}")
    return pins, roots, hashes


def applicable(requirements: list[str]) -> list[Requirement]:
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(IMAGE_ENVIRONMENT)]


@pytest.mark.parametrize("lock", ["requirements.lock", "build-requirements.lock"])
def test_every_pin_carries_sha256_hashes(lock: str) -> None:
    pins, _, hashes = read_lock(lock)
    assert pins
    assert [name for name, count in hashes.items() if count == 0] == []


def test_runtime_lock_satisfies_exactly_pyproject_dependencies() -> None:
    pins, roots, _ = read_lock("requirements.lock")
    wanted = applicable(PYPROJECT["project"]["dependencies"])
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock lacks {requirement.name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, pyproject wants {requirement}: run `make lock`"
        )
    # A dependency dropped from pyproject must leave the lock too (uv marks what pyproject asked for).
    assert roots == {canonicalize_name(r.name) for r in wanted}


def test_build_lock_satisfies_build_system_requires() -> None:
    pins, _, _ = read_lock("build-requirements.lock")
    for requirement in applicable(PYPROJECT["build-system"]["requires"]):
        name = canonicalize_name(requirement.name)
        assert name in pins and requirement.specifier.contains(pins[name]), f"{requirement}: run `make lock`"


def test_the_tests_run_the_locked_versions() -> None:
    """`make venv` installs from the lock, so what the tests exercise is what the image ships."""
    pins, _, _ = read_lock("requirements.lock")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    assert {name: installed.get(name) for name in pins} == pins


def test_dockerfile_installs_only_from_the_lock_with_hashes() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    installs = re.findall(r"python -m pip (?:install|download|wheel)[^\n&]*", dockerfile)
    assert any("--require-hashes" in i and "download" in i and "requirements.lock" in i for i in installs)
    assert any("--require-hashes" in i and "build-requirements.lock" in i for i in installs)
    assert any("--no-index" in i and "--require-hashes" in i and "requirements.lock" in i for i in installs)
    # Anything else pip touches is the project's own wheel, never a dependency resolved freshly.
    for line in installs:
        assert "--require-hashes" in line or "--no-deps" in line, line
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "!requirements.lock" in ignored and "!build-requirements.lock" in ignored


class _OsvStandIn(BaseHTTPRequestHandler):
    """Answers OSV's /v1/query: one advisory for the package named in `server.vulnerable`."""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = query["package"]["name"]
        vulns = []
        if name == self.server.vulnerable:  # type: ignore[attr-defined]
            vulns.append(
                {
                    "id": "GHSA-test-0000-0000",
                    "summary": "stand-in advisory",
                    "affected": [
                        {
                            "package": {"name": name, "ecosystem": "PyPI"},
                            "ranges": [
                                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999"}]}
                            ],
                        }
                    ],
                }
            )
        body = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def osv_stand_in() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OsvStandIn)
    server.vulnerable = ""  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_audit(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), **env}
    command = [sys.executable, "-m", "hack.audit"]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def test_audit_fails_on_a_known_vulnerability(osv_stand_in: ThreadingHTTPServer, tmp_path: Path) -> None:
    osv_stand_in.vulnerable = "aiohttp"  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{osv_stand_in.server_port}/v1/query"
    result = run_audit(tmp_path, AUDIT_OSV_URL=url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GHSA-test-0000-0000" in result.stdout and "aiohttp" in result.stdout


def test_audit_passes_when_the_source_knows_no_vulnerability(
    osv_stand_in: ThreadingHTTPServer, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{osv_stand_in.server_port}/v1/query"
    result = run_audit(tmp_path, AUDIT_OSV_URL=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"against OSV at {url}" in result.stdout


def test_audit_says_in_one_line_when_no_source_answers(tmp_path: Path) -> None:
    closed = "http://127.0.0.1:9/v1/query"  # the discard port: nothing listens there
    result = run_audit(tmp_path, AUDIT_OSV_URL=closed)
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    assert result.stdout.startswith("audit: vulnerability audit NOT done, no advisory source reachable")
    assert f"OSV at {closed}: " in result.stdout
    required = run_audit(tmp_path, AUDIT_OSV_URL=closed, AUDIT_REQUIRED="1")
    assert required.returncode == 1 and "AUDIT_REQUIRED=1" in required.stdout
