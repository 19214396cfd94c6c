"""Fixtures of the reliability tests; every test here carries the `e2e` marker (it needs the control plane).

Reused from the end-to-end tests: `control_plane` and `kube_api` (tests/e2e/conftest.py) and `crd`
(tests/e2e/service/conftest.py). Imported here, they make a control plane of this folder's own:
the faults injected below (apiserver restarts, killed webhooks behind failurePolicy Fail) never
reach the end-to-end tests running in the same session.

    reliability_scale  (session)  CI share or full run (RELIABILITY_FULL=1): `scale.pick(ci, full)`
    cluster            (function) the e2e `Cluster` helper with a fresh account, and no webhook:
                                  each test starts the webhooks it needs (support.running_webhook)
    log_dir            (session)  where the webhooks' logs go

At the end of the session the figures the tests recorded are written to .cache/reliability/
(`make reliability` prints them).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import ControlPlane
from tests.e2e.conftest import control_plane, kube_api  # noqa: F401  (fixtures, re-bound to this folder)
from tests.e2e.service.conftest import Cluster, crd  # noqa: F401
from tests.reliability import figures
from tests.reliability.scale import Scale, current_scale
from tests.reliability.support import new_api

_HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: the marker must be on the items before `-m e2e` / `-m "not e2e"` deselects.
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)


_written: list[Path] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    outcome = {"collected": session.testscollected, "failed": session.testsfailed}
    path = figures.write(current_scale().mode, outcome)
    if path is not None:
        _written.append(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in _written:
        terminalreporter.write_line(f"reliability figures written to {path}")


@pytest.fixture(scope="session")
def reliability_scale() -> Scale:
    return current_scale()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability-logs")


@pytest.fixture
def cluster(control_plane: ControlPlane, crd: None) -> Iterator[Cluster]:  # noqa: F811
    api = new_api(control_plane)
    helper = Cluster(control_plane, api, account=f"r{secrets.token_hex(4)}")
    try:
        yield helper
    finally:
        helper.cleanup()
        api.close()
