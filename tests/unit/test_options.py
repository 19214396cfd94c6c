"""`chaos-registry serve` options: the dataclass and the parser come from one declaration."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from webhook.service.options import ServeOptions, add_serve_arguments, options_from_args


def parse(argv: list[str]) -> ServeOptions:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    return options_from_args(parser.parse_args(argv))


def test_no_flags_give_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    parsed = parse(["--identity", "pod-0"])
    assert parsed == ServeOptions(identity="pod-0")


def test_every_option_has_a_flag_that_sets_it() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    destinations = {action.dest for action in parser._actions}
    assert {option.name for option in fields(ServeOptions)} <= destinations


def test_flags_reach_their_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    parsed = parse(
        [
            "--port", "9443",
            "--cert-validity-days", "30",
            "--tls-san", "a.example", "--tls-san", "10.0.0.1",
            "--no-writer",
            "--no-manage-ca-bundle",
            "--select-all-namespaces",
            "--secret-source-namespace", "shared",
            "--engine", "kopf",
        ]
    )  # fmt: skip
    assert parsed.namespace == "from-env"
    assert (parsed.port, parsed.cert_validity_days) == (9443, 30.0)
    assert parsed.tls_sans == ("a.example", "10.0.0.1")
    assert (parsed.writer, parsed.manage_ca_bundle, parsed.select_all_namespaces) == (False, False, True)
    assert parsed.source_namespaces == ("from-env", "shared")
    assert parsed.engine == "kopf"


@pytest.mark.parametrize("argv", [["--resync-interval", "0"], ["--engine", "fast"], ["--port", "x"]])
def test_bad_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(argparse.ArgumentError):
        parse(argv)
