"""Options of `chaos-registry serve`, declared once: each field of `ServeOptions` carries its
command-line flag, so the dataclass, the parser and their defaults cannot disagree. Parsed without
importing kopf, so `--help` and the offline commands stay fast."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from webhook.core.models import DEFAULTS_CONFIGMAP

DEFAULT_NAMESPACE = "chaos-system"


@dataclass(frozen=True)
class Flag:
    """How one option is given on the command line."""

    help: str | None
    group: str | None = None  # the --help section; None: the command's own
    name: str | None = None  # default: "--" and the field's name with dashes
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    action: str | None = None  # store_true, store_false or append
    metavar: str | None = None
    env: str | None = None  # an environment variable that, when set, is the default


def positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    def positive_number(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return positive_number


def _option(default: Any, help: str | None, **flag: Any) -> Any:
    return field(default=default, metadata={"flag": Flag(help, **flag)})


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


SERVER, TLS, HOOK, WRITE, CHECK, LOGS = (
    "admission server",
    "certificates",
    "webhook configuration",
    "configuration and write side",
    "registry check (opt-in: needs egress to the registries)",
    "logging",
)


@dataclass(frozen=True)
class ServeOptions:
    namespace: str = _option(
        DEFAULT_NAMESPACE,
        "the webhook's own namespace: defaults ConfigMap, certificate Secret, Lease "
        "(default: $POD_NAMESPACE or %(default)s)",
        env="POD_NAMESPACE",
    )
    kubeconfig: str | None = _option(
        None, "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"
    )
    address: str = _option("0.0.0.0", "listen address of the HTTPS admission server", group=SERVER)
    port: int = _option(8443, "HTTPS port (default %(default)s)", group=SERVER)
    health_address: str = _option("0.0.0.0", "listen address of /healthz, /readyz, /metrics", group=SERVER)
    health_port: int = _option(8080, "plain-HTTP port of /healthz, /readyz, /metrics", group=SERVER)
    engine: str = _option(
        "direct",
        "direct: answer from the snapshot with the core's JSON patch (default); "
        "kopf: through kopf's generic admission handler (slower: copies and diffs the pod)",
        group=SERVER,
        choices=("direct", "kopf"),
    )
    failure_policy: str = _option(
        "Fail",
        "how an internal error is answered, and the policy of a configuration made by "
        "--webhook-url (default %(default)s)",
        group=SERVER,
        choices=("Fail", "Ignore"),
    )
    tls_mode: str = _option(
        "self-managed",
        "self-managed: a CA and certificate in --tls-secret, renewed before expiry; "
        "files: --tls-cert-file/--tls-key-file (cert-manager), reloaded when they change",
        group=TLS,
        choices=("self-managed", "files"),
    )
    tls_cert_file: str | None = _option(None, "serving certificate (PEM) in files mode", group=TLS)
    tls_key_file: str | None = _option(None, "serving key (PEM) in files mode", group=TLS)
    tls_ca_file: str | None = _option(
        None, "CA bundle to put in the webhook configuration in files mode", group=TLS
    )
    tls_secret: str = _option("chaos-registry-webhook-tls", "Secret of the self-managed mode", group=TLS)
    tls_sans: tuple[str, ...] = _option(
        (),
        "extra DNS name or IP of the self-managed certificate (repeatable)",
        group=TLS,
        name="--tls-san",
        action="append",
        metavar="HOST",
    )
    cert_validity_days: float = _option(
        365.0, "serving certificate lifetime", group=TLS, type=positive(float)
    )
    ca_validity_days: float = _option(3650.0, "self-managed CA lifetime", group=TLS, type=positive(float))
    cert_check_interval: float = _option(
        60.0,
        "seconds between checks of the certificate (renewal at a third of the lifetime left)",
        group=TLS,
        type=positive(float),
    )
    service_name: str = _option("chaos-registry-webhook", "the Service in front of the replicas", group=HOOK)
    webhook_config_name: str = _option(
        "chaos-registry-webhook",
        "the MutatingWebhookConfiguration whose caBundle is kept current",
        group=HOOK,
    )
    webhook_url: str | None = _option(
        None,
        "create or update the MutatingWebhookConfiguration to call this base URL "
        "(local runs and tests; in a cluster the chart owns it)",
        group=HOOK,
    )
    manage_ca_bundle: bool = _option(
        True,
        "never patch the configuration's caBundle (cert-manager's cainjector does it)",
        group=HOOK,
        name="--no-manage-ca-bundle",
        action="store_false",
    )
    timeout_seconds: int = _option(5, "timeout of a configuration made by --webhook-url", group=HOOK)
    select_all_namespaces: bool = _option(
        False,
        "a configuration made by --webhook-url also selects namespaces without an account label",
        group=HOOK,
        action="store_true",
    )
    defaults_configmap: str = _option(DEFAULTS_CONFIGMAP, "the defaults ConfigMap", group=WRITE)
    secret_source_namespaces: tuple[str, ...] = _option(
        (),
        "another namespace whose Secrets may be copied (repeatable)",
        group=WRITE,
        name="--secret-source-namespace",
        action="append",
        metavar="NAMESPACE",
    )
    lease_name: str = _option("chaos-registry-webhook-leader", "Lease of the write side", group=WRITE)
    lease_duration: float = _option(
        15.0, "seconds a leader holds the Lease", group=WRITE, type=positive(float)
    )
    identity: str = field(
        default_factory=_default_identity,
        metadata={"flag": Flag("this replica's name in the Lease (default: host-pid)", group=WRITE)},
    )
    writer: bool = _option(
        True,
        "never write status, Secret copies or Events (serve admissions only)",
        group=WRITE,
        name="--no-writer",
        action="store_false",
    )
    resync_interval: float = _option(
        30.0,
        "seconds between full reconciliations of status and Secret copies",
        group=WRITE,
        type=positive(float),
    )
    watch_idle_timeout: float = _option(
        150.0,
        "seconds without a byte on a watch (the apiserver sends a bookmark each minute) after "
        "which the connection is taken for silently dropped and the kind is listed again",
        group=WRITE,
        type=positive(float),
    )
    check_images: bool = _option(
        False,
        "the Lease holder checks that every scope's images are in its registry (ImagesAvailable)",
        group=CHECK,
        action="store_true",
    )
    check_images_interval: float = _option(
        600.0,
        "seconds between checks (also after a configuration change, at most every 30 s)",
        group=CHECK,
        type=positive(float),
    )
    check_images_timeout: float = _option(
        10.0, "seconds per registry request", group=CHECK, type=positive(float)
    )
    check_images_concurrency: int = _option(8, "registry requests at once", group=CHECK, type=positive(int))
    registry_ca_file: str | None = _option(
        None, "also trust this CA for registries", group=CHECK, metavar="PEM"
    )
    log_level: str = _option(
        "info",
        "debug logs one line per admission",
        group=LOGS,
        choices=("debug", "info", "warning", "error"),
    )
    log_format: str = _option("text", None, group=LOGS, choices=("text", "json"))

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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of ServeOptions, in their order, grouped as declared."""
    groups: dict[str, Any] = {}
    for option in fields(ServeOptions):
        flag: Flag = option.metadata["flag"]
        target: Any = parser
        if flag.group is not None:
            target = groups.get(flag.group) or groups.setdefault(
                flag.group, parser.add_argument_group(flag.group)
            )
        default: Any = option.default if option.default_factory is MISSING else option.default_factory()
        if flag.env is not None:
            default = os.environ.get(flag.env, default)
        arguments: dict[str, Any] = {"dest": option.name, "help": flag.help}
        if flag.action in ("store_true", "store_false"):
            arguments["action"] = flag.action
        elif flag.action == "append":
            arguments.update(action="append", default=list(default), metavar=flag.metavar)
        else:
            arguments["default"] = default
            if flag.type is not None:
                arguments["type"] = flag.type
            elif isinstance(default, int):
                arguments["type"] = int
            if flag.choices is not None:
                arguments["choices"] = flag.choices
        target.add_argument(flag.name or "--" + option.name.replace("_", "-"), **arguments)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    values = {
        option.name: getattr(args, option.name)
        for option in fields(ServeOptions)
        if hasattr(args, option.name)
    }
    for option in fields(ServeOptions):
        if option.metadata["flag"].action == "append":
            values[option.name] = tuple(values.get(option.name) or ())
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
