"""Options of `chaos-registry serve`: parsed without importing kopf, so `--help` and the offline
commands stay fast."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field
from typing import Any

DEFAULT_NAMESPACE = "chaos-system"


@dataclass(frozen=True)
class ServeOptions:
    namespace: str = DEFAULT_NAMESPACE
    address: str = "0.0.0.0"
    port: int = 8443
    health_address: str = "0.0.0.0"
    health_port: int = 8080
    tls_mode: str = "self-managed"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    tls_secret: str = "chaos-registry-webhook-tls"
    tls_sans: tuple[str, ...] = ()
    cert_validity_days: float = 365.0
    ca_validity_days: float = 3650.0
    cert_check_interval: float = 60.0
    service_name: str = "chaos-registry-webhook"
    webhook_config_name: str = "chaos-registry-webhook"
    webhook_url: str | None = None
    manage_ca_bundle: bool = True
    failure_policy: str = "Fail"
    timeout_seconds: int = 5
    select_all_namespaces: bool = False
    defaults_configmap: str = "chaos-registry-defaults"
    secret_source_namespaces: tuple[str, ...] = ()
    lease_name: str = "chaos-registry-webhook-leader"
    lease_duration: float = 15.0
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    writer: bool = True
    resync_interval: float = 30.0
    watch_idle_timeout: float = 150.0
    engine: str = "direct"
    log_level: str = "info"
    log_format: str = "text"
    kubeconfig: str | None = None

    def service_hosts(self) -> list[str]:
        """SANs of the self-managed certificate: the Service's DNS names, then any extra ones."""
        service, namespace = self.service_name, self.namespace
        hosts = [
            f"{service}.{namespace}.svc",
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc.cluster.local",
        ]
        return hosts + [san for san in self.tls_sans if san not in hosts]

    @property
    def source_namespaces(self) -> tuple[str, ...]:
        """Namespaces whose Secrets may be copied: the webhook's own and the allowed ones."""
        return (self.namespace, *(ns for ns in self.secret_source_namespaces if ns != self.namespace))


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--namespace",
        default=env("POD_NAMESPACE", DEFAULT_NAMESPACE),
        help="the webhook's own namespace: defaults ConfigMap, certificate Secret, Lease "
        "(default: $POD_NAMESPACE or %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"
    )
    server = parser.add_argument_group("admission server")
    server.add_argument("--address", default="0.0.0.0", help="listen address of the HTTPS admission server")
    server.add_argument("--port", type=int, default=8443, help="HTTPS port (default %(default)s)")
    server.add_argument(
        "--health-address", default="0.0.0.0", help="listen address of /healthz, /readyz, /metrics"
    )
    server.add_argument(
        "--health-port", type=int, default=8080, help="plain-HTTP port of /healthz, /readyz, /metrics"
    )
    server.add_argument(
        "--engine",
        choices=("direct", "kopf"),
        default="direct",
        help="direct: answer from the snapshot with the core's JSON patch (default); "
        "kopf: through kopf's generic admission handler (slower: copies and diffs the pod)",
    )
    server.add_argument(
        "--failure-policy",
        choices=("Fail", "Ignore"),
        default="Fail",
        help="how an internal error is answered, and the policy of a configuration made by "
        "--webhook-url (default %(default)s)",
    )
    tls = parser.add_argument_group("certificates")
    tls.add_argument(
        "--tls-mode",
        choices=("self-managed", "files"),
        default="self-managed",
        help="self-managed: a CA and certificate in --tls-secret, renewed before expiry; "
        "files: --tls-cert-file/--tls-key-file (cert-manager), reloaded when they change",
    )
    tls.add_argument("--tls-cert-file", help="serving certificate (PEM) in files mode")
    tls.add_argument("--tls-key-file", help="serving key (PEM) in files mode")
    tls.add_argument("--tls-ca-file", help="CA bundle to put in the webhook configuration in files mode")
    tls.add_argument(
        "--tls-secret", default="chaos-registry-webhook-tls", help="Secret of the self-managed mode"
    )
    tls.add_argument(
        "--tls-san",
        action="append",
        default=[],
        dest="tls_sans",
        metavar="HOST",
        help="extra DNS name or IP of the self-managed certificate (repeatable)",
    )
    tls.add_argument(
        "--cert-validity-days", type=_positive(float), default=365.0, help="serving certificate lifetime"
    )
    tls.add_argument(
        "--ca-validity-days", type=_positive(float), default=3650.0, help="self-managed CA lifetime"
    )
    tls.add_argument(
        "--cert-check-interval",
        type=_positive(float),
        default=60.0,
        help="seconds between checks of the certificate (renewal at a third of the lifetime left)",
    )
    hook = parser.add_argument_group("webhook configuration")
    hook.add_argument(
        "--service-name", default="chaos-registry-webhook", help="the Service in front of the replicas"
    )
    hook.add_argument(
        "--webhook-config-name",
        default="chaos-registry-webhook",
        help="the MutatingWebhookConfiguration whose caBundle is kept current",
    )
    hook.add_argument(
        "--webhook-url",
        help="create or update the MutatingWebhookConfiguration to call this base URL "
        "(local runs and tests; in a cluster the chart owns it)",
    )
    hook.add_argument(
        "--no-manage-ca-bundle",
        dest="manage_ca_bundle",
        action="store_false",
        help="never patch the configuration's caBundle (cert-manager's cainjector does it)",
    )
    hook.add_argument(
        "--timeout-seconds", type=int, default=5, help="timeout of a configuration made by --webhook-url"
    )
    hook.add_argument(
        "--select-all-namespaces",
        action="store_true",
        help="a configuration made by --webhook-url also selects namespaces without an account label",
    )
    config = parser.add_argument_group("configuration and write side")
    config.add_argument(
        "--defaults-configmap", default="chaos-registry-defaults", help="the defaults ConfigMap"
    )
    config.add_argument(
        "--secret-source-namespace",
        action="append",
        default=[],
        dest="secret_source_namespaces",
        metavar="NAMESPACE",
        help="another namespace whose Secrets may be copied (repeatable)",
    )
    config.add_argument(
        "--lease-name", default="chaos-registry-webhook-leader", help="Lease of the write side"
    )
    config.add_argument(
        "--lease-duration", type=_positive(float), default=15.0, help="seconds a leader holds the Lease"
    )
    config.add_argument(
        "--identity",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name in the Lease (default: host-pid)",
    )
    config.add_argument(
        "--no-writer",
        dest="writer",
        action="store_false",
        help="never write status, Secret copies or Events (serve admissions only)",
    )
    config.add_argument(
        "--resync-interval",
        type=_positive(float),
        default=30.0,
        help="seconds between full reconciliations of status and Secret copies",
    )
    config.add_argument(
        "--watch-idle-timeout",
        type=_positive(float),
        default=150.0,
        help="seconds without a byte on a watch (the apiserver sends a bookmark each minute) after "
        "which the connection is taken for silently dropped and the kind is listed again",
    )
    logs = parser.add_argument_group("logging")
    logs.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="debug logs one line per admission",
    )
    logs.add_argument("--log-format", choices=("text", "json"), default="text")


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    names = ServeOptions.__dataclass_fields__.keys()
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    for name in ("tls_sans", "secret_source_namespaces"):
        values[name] = tuple(values.get(name) or ())
    return ServeOptions(**values)


def validate_options(options: ServeOptions) -> list[str]:
    problems = []
    if options.tls_mode == "files" and not (options.tls_cert_file and options.tls_key_file):
        problems.append("--tls-mode files needs --tls-cert-file and --tls-key-file")
    if options.tls_mode == "self-managed" and (options.tls_cert_file or options.tls_key_file):
        problems.append("--tls-cert-file/--tls-key-file need --tls-mode files")
    if options.webhook_url is not None and not options.webhook_url.startswith("https://"):
        problems.append(f"--webhook-url must start with https:// (got {options.webhook_url!r})")
    return problems
