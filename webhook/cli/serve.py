"""`chaos-registry serve` and `check-admission`: start-up checks, and one line for every failure a
user can cause (bad flag values exit 2; unreadable files, ports in use, no cluster exit 1)."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TextIO

from webhook.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE
from webhook.service.options import options_from_args, validate_options

logger = logging.getLogger(__name__)


def _serve_usage_problems(args: argparse.Namespace) -> list[str]:
    """Flag values that cannot work (exit 2)."""
    problems = []
    for flag in ("port", "health_port"):
        port = getattr(args, flag, None)
        if isinstance(port, int) and not 0 < port < 65536:
            problems.append(f"--{flag.replace('_', '-')} must be 1-65535, got {port}")
    return problems


def _serve_environment_problems(args: argparse.Namespace) -> list[str]:
    """What would stop `serve` a moment later, said before anything starts (exit 1): files that
    cannot be read or are not PEM, ports already in use."""
    problems = []
    for flag in ("tls_cert_file", "tls_key_file", "tls_ca_file", "kubeconfig"):
        path = getattr(args, flag, None)
        if path is None:
            continue
        try:
            with open(path, "rb") as stream:
                stream.read(1)
        except OSError as error:
            problems.append(f"--{flag.replace('_', '-')} {path}: cannot read: {error.strerror or error}")
    cert, key = getattr(args, "tls_cert_file", None), getattr(args, "tls_key_file", None)
    if not problems and cert and key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as error:
            reason = " ".join(str(error).split())[:200]
            problems.append(f"--tls-cert-file/--tls-key-file: not a PEM certificate and its key ({reason})")
    for address_flag, port_flag in (("address", "port"), ("health_address", "health_port")):
        address, port = getattr(args, address_flag, None), getattr(args, port_flag, None)
        if not isinstance(address, str) or not isinstance(port, int):
            continue
        try:
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((address, port))
        except OSError as error:
            problems.append(
                f"--{port_flag.replace('_', '-')} {port}: cannot listen on {address}: "
                f"{error.strerror or error}"
            )
    return problems


def startup_failure(error: BaseException) -> str:
    """One line for an error that ended `serve`: what failed and what to check."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError as Urllib3Error

    detail = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ConfigException):
        return (
            f"no usable cluster configuration ({detail}): run in a pod, or pass --kubeconfig "
            "(or set KUBECONFIG)"
        )
    if isinstance(error, ApiException):
        return f"the cluster refused a request: {error.status} {error.reason}"
    if isinstance(error, Urllib3Error):
        reason = getattr(error, "reason", None)
        return f"cannot reach the cluster: {' '.join(str(reason or detail).split())}"
    if isinstance(error, OSError):
        if error.errno == errno.EADDRINUSE:
            return f"cannot listen: address already in use ({detail})"
        where = f" {error.filename}" if error.filename else ""
        return f"cannot start:{where} {error.strerror or detail}"
    return f"cannot start: {type(error).__name__}: {detail}"


def cmd_check_admission(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from webhook.cli.admission_check import CheckFailed, dry_run_creator, run_check

    try:
        result = run_check(
            dry_run_creator(args.kubeconfig), args.namespace, args.expect_registry, args.timeout
        )
    except CheckFailed as failure:
        print(f"chaos-registry check-admission: error: {failure}", file=err)
        return EXIT_BAD_INPUT
    out.write(result.summary(args.namespace) + "\n")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    options = options_from_args(args)
    checks: tuple[tuple[Callable[[], list[str]], int], ...] = (
        (lambda: validate_options(options) + _serve_usage_problems(args), EXIT_USAGE),
        (lambda: _serve_environment_problems(args), EXIT_BAD_INPUT),
    )
    for check, code in checks:
        if problems := check():
            for problem in problems:
                print(f"chaos-registry serve: error: {problem}", file=err)
            return code
    from webhook.service.operator import run  # kopf is imported only when serving

    try:
        return run(options)
    except Exception as error:  # every start-up failure a user can cause ends in one line
        logger.debug("serve stopped", exc_info=error)
        print(f"chaos-registry serve: error: {startup_failure(error)}", file=err)
        return EXIT_BAD_INPUT
