"""Writes (or checks) the hash-pinned lock files the image installs from.

The Dockerfile installs nothing that is not pinned to a version and a sha256 here, so a rebuild
months later gets the same bytes, and a tampered or substituted download fails the build instead of
running in the admission path. Two locks, both resolved by uv for the image's Python on Linux:

* requirements.lock: pyproject's [project].dependencies and everything they pull in;
* build-requirements.lock: pyproject's [build-system].requires (used by the build stage only).

`python -m hack.lock` rewrites both, keeping every pin that still satisfies pyproject (uv prefers
the versions already in the output file), so adding one dependency does not upgrade the rest.
`python -m hack.lock --upgrade` moves every pin to the newest allowed version.
`python -m hack.lock --check` resolves into a scratch copy and fails when the result differs from
what is committed (needs the package index; tests/unit/test_lock.py checks offline).
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
RUNTIME_LOCK = REPO / "requirements.lock"
BUILD_LOCK = REPO / "build-requirements.lock"
# The image's interpreter (Dockerfile PYTHON_IMAGE) and platform; markers resolve against these.
PYTHON_VERSION = "3.11"
PYTHON_PLATFORM = "linux"


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise SystemExit("lock: uv is not installed (it is in the dev extras: run `make venv`)")
    return found


def _compile(source: Path, output: Path, upgrade: bool) -> None:
    command = [
        _uv(),
        "pip",
        "compile",
        str(source),
        "--generate-hashes",
        "--python-version",
        PYTHON_VERSION,
        "--python-platform",
        PYTHON_PLATFORM,
        "--no-header",
        "--quiet",
        "--output-file",
        str(output),
    ]
    if upgrade:
        command.append("--upgrade")
    result = subprocess.run(command, cwd=source.parent, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"lock: uv pip compile {source.name} failed: {result.stderr.strip()}")


def _build_requires() -> list[str]:
    return list(tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"])


def write_locks(folder: Path, upgrade: bool) -> tuple[Path, Path]:
    """Resolves both locks into `folder` (seeded with the committed ones so pins are kept)."""
    runtime, build = folder / RUNTIME_LOCK.name, folder / BUILD_LOCK.name
    if folder != REPO:
        shutil.copy(PYPROJECT, folder / PYPROJECT.name)
        for lock in (RUNTIME_LOCK, BUILD_LOCK):
            if lock.exists():
                shutil.copy(lock, folder / lock.name)
    _compile(folder / PYPROJECT.name, runtime, upgrade)
    with tempfile.TemporaryDirectory() as scratch:
        build_in = Path(scratch) / "build-requirements.in"
        build_in.write_text("".join(f"{requirement}\n" for requirement in _build_requires()))
        _compile(build_in, build, upgrade)
    # uv names its input in "# via" lines; that input is a scratch file, its source is pyproject.
    build.write_text(build.read_text().replace(f"-r {build_in.name}", "pyproject.toml [build-system]"))
    return runtime, build


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed locks are stale")
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest version")
    options = parser.parse_args()
    if not options.check:
        write_locks(REPO, options.upgrade)
        print(f"wrote {RUNTIME_LOCK.name} and {BUILD_LOCK.name}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        stale = False
        resolved = write_locks(Path(scratch), False)
        for fresh, committed in zip(resolved, (RUNTIME_LOCK, BUILD_LOCK), strict=True):
            old = committed.read_text().splitlines() if committed.exists() else []
            new = fresh.read_text().splitlines()
            diff = list(difflib.unified_diff(old, new, committed.name, "resolved", lineterm=""))
            if diff:
                stale = True
                print("\n".join(diff[:40]), file=sys.stderr)
        if stale:
            print("lock: the locks are out of date with pyproject.toml: run `make lock`", file=sys.stderr)
            return 1
    print(f"{RUNTIME_LOCK.name} and {BUILD_LOCK.name} match pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
