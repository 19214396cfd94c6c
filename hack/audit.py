"""Audits the locked dependencies (requirements.lock, build-requirements.lock) for known vulnerabilities.

`make lint` runs this. pip-audit asks an advisory source about every pinned version; when no source
answers (a network with only a package index proxy, as on this project's CI machines), pip-audit
itself would report every package as "not found" and still exit 0, which reads like a clean audit.
So the source is probed first with one real query, and when none answers this prints one line
saying the audit was not done and why, and exits 0 (or 1 with AUDIT_REQUIRED=1, for a release job
that must not ship unaudited). When a source answers, pip-audit runs with --strict, so a package it
cannot look up fails the audit too.

Sources, in order: PyPI's JSON API (vulnerabilities per release), then OSV. AUDIT_OSV_URL points at
another OSV-compatible endpoint (a mirror) and makes it the only source.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = (REPO / "requirements.lock", REPO / "build-requirements.lock")
PYPI_JSON_URL = os.environ.get("AUDIT_PYPI_URL", "https://pypi.org/pypi")
OSV_URL = "https://api.osv.dev/v1/query"
PROBE_TIMEOUT_SECONDS = 8.0


@dataclass(frozen=True)
class Source:
    service: str
    url: str
    label: str


def first_pin(lock: Path) -> tuple[str, str]:
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            return name, version
    raise SystemExit(f"audit: {lock.name} pins nothing")


def probe(source: Source, name: str, version: str) -> str | None:
    """One real query for one pinned package; None when the source answered as it should."""
    if source.service == "pypi":
        request = urllib.request.Request(f"{source.url}/{name}/{version}/json")
    else:
        body = json.dumps({"package": {"name": name, "ecosystem": "PyPI"}, "version": version}).encode()
        request = urllib.request.Request(source.url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return str(reason) or type(reason).__name__
    except ValueError:
        return "an answer that is not JSON"
    if source.service == "pypi" and not (isinstance(answer, dict) and "vulnerabilities" in answer):
        return "an answer without vulnerabilities"
    if source.service == "osv" and not isinstance(answer, dict):
        return "an answer that is not an object"
    return None


def sources() -> list[Source]:
    mirror = os.environ.get("AUDIT_OSV_URL")
    if mirror:
        return [Source("osv", mirror, f"OSV at {mirror}")]
    return [Source("pypi", PYPI_JSON_URL, "PyPI JSON API"), Source("osv", OSV_URL, "OSV API")]


def main() -> int:
    name, version = first_pin(LOCKS[0])
    failures = []
    for source in sources():
        failure = probe(source, name, version)
        if failure is not None:
            failures.append(f"{source.label}: {failure}")
            continue
        pip_audit = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or "pip-audit"
        command = [pip_audit, "--vulnerability-service", source.service, "--strict"]
        command += ["--progress-spinner", "off"]
        if source.service == "osv":
            command += ["--osv-url", source.url]
        for lock in LOCKS:
            command += ["--requirement", str(lock)]
        # Every line of both locks is pinned and hashed, so pip is not needed to resolve anything.
        command += ["--require-hashes", "--disable-pip"]
        print(f"audit: {' + '.join(lock.name for lock in LOCKS)} against {source.label}", flush=True)
        return subprocess.run(command, cwd=REPO).returncode
    required = os.environ.get("AUDIT_REQUIRED") == "1"
    print(
        f"audit: vulnerability audit NOT done, no advisory source reachable ({'; '.join(failures)})"
        + (" and AUDIT_REQUIRED=1" if required else "; the locked versions are unaudited")
    )
    return 1 if required else 0


if __name__ == "__main__":
    sys.exit(main())
