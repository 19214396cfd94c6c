"""The `chaos-registry` command line: mutate, explain and validate offline; serve runs the webhook.

Exit codes (README "Command line"): 0 done; 1 bad input, output that cannot be written, or `serve`
unable to start (one line per problem on stderr, naming the file, field or setting); 2 usage (a
command-line flag or value); 3 an internal error (a bug, reported in one line: please report it).
Never a traceback: every input a user or a pod author controls ends in one of these.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from webhook.cli.exit_codes import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE
from webhook.cli.pod import explain_pod
from webhook.cli.registry import add_commands as add_registry_commands
from webhook.cli.registry import add_source_arguments, load_source
from webhook.cli.serve import cmd_check_admission, cmd_serve
from webhook.core.classifier import opted_out, scope_from_labels
from webhook.core.documents import MAX_INPUT_BYTES, dump_yaml, quote
from webhook.core.jsonpatch import apply_patch
from webhook.core.loader import ConfigError, LoadedConfig, load_config, load_documents
from webhook.core.models import INJECT_LABEL, Scope
from webhook.core.resolver import REGISTRY_FIELDS, Effective
from webhook.service.options import add_serve_arguments

INPUT_LIMIT_TEXT = f"every input file (and stdin) is read up to {MAX_INPUT_BYTES // (1024 * 1024)} MiB"
EPILOG = (
    f"Inputs: {INPUT_LIMIT_TEXT}, 100 levels of nesting and 1,000,000 values once YAML aliases are "
    "expanded. Exit codes: 0 done, 1 bad input (one line per problem, naming file and field), "
    "unwritable output or serve unable to start, 2 usage, 3 internal error."
)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit 2), pointing at --help instead of repeating the usage."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _dump(document: Any, output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return dump_yaml(document)


def _warn(message: str, stream: TextIO) -> None:
    print(f"warning: {message}", file=stream)


def _read_pod(path: str) -> dict[str, Any]:
    documents = load_documents(path)
    if len(documents) != 1:
        raise ConfigError([f"{path}: expected exactly one Pod document, found {len(documents)}"])
    pod = documents[0]
    if not isinstance(pod, dict):
        raise ConfigError([f"{path}: not a Kubernetes object (expected a mapping with apiVersion and kind)"])
    if pod.get("kind") != "Pod":
        raise ConfigError([f"{path}: kind: expected Pod, found {quote(pod.get('kind'))}"])
    if not isinstance(pod.get("spec"), dict):
        raise ConfigError([f"{path}: spec: missing or not a mapping"])
    return pod


def cmd_mutate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = load_config(args.config)
    pod = _read_pod(args.pod)
    metadata = pod.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    if namespace not in loaded.namespaces:
        _warn(
            f"namespace {quote(namespace)} of {args.pod} is not in CONFIG: "
            "treated as a namespace without labels",
            err,
        )
    mutation = loaded.snapshot().config.mutate(pod, loaded.namespaces.get(namespace))
    for warning in mutation.warnings:
        _warn(warning, err)
    if args.patch:
        out.write(json.dumps(mutation.patch, indent=2) + "\n")
    else:
        out.write(_dump(apply_patch(pod, mutation.patch), args.output))
    return EXIT_OK


def _explain_scope(args: argparse.Namespace, loaded: LoadedConfig, err: TextIO) -> Scope:
    defaults = loaded.compile().defaults
    if args.scope is not None:
        try:
            return Scope.parse(args.scope)
        except ValueError as error:
            raise ConfigError([f"--scope: {error}"]) from None
    labels = loaded.namespaces.get(args.namespace)
    if labels is None:
        _warn(
            f"namespace {quote(args.namespace)} is not in CONFIG: treated as a namespace without labels", err
        )
        labels = {}
    binding = scope_from_labels(labels, defaults.default_account)
    if binding.warning:
        _warn(binding.warning, err)
    return binding.scope


def explain_document(
    effective: Effective, blocked_below: list[dict[str, str]], notes: Sequence[str] = ()
) -> dict[str, Any]:
    """The explanation as plain data (printed as text, or as JSON with -o json)."""
    registry = {
        key.split(".", 1)[1]: {"value": getattr(effective, attribute), "from": effective.provenance[key]}
        for key, attribute in REGISTRY_FIELDS
    }
    images = {
        key.rsplit(".", 1)[1]: {"value": effective.custom_images[key.rsplit(".", 1)[1]], "from": source}
        for key, source in sorted(effective.provenance.items())
        if key.startswith("customImages.images.")
    }
    return {
        "scope": str(effective.scope),
        "level": effective.scope.level,
        "registry": registry,
        "customImages": {
            "enabled": {
                "value": effective.custom_enabled,
                "from": effective.provenance["customImages.enabled"],
            },
            "images": images,
        },
        "applied": list(effective.applied),
        "blocked": [
            {
                "resource": b.resource,
                "scope": str(b.scope),
                "blockedBy": b.blocker,
                "blockerScope": str(b.blocker_scope),
            }
            for b in effective.blocked
        ],
        "blockedBelow": blocked_below,
        "problems": list(effective.problems),
        "notes": list(notes),
    }


def _explain_text(document: dict[str, Any]) -> str:
    lines = [f"scope: {document['scope']} ({document['level']})", "registry:"]
    fields = document["registry"]
    width = max(len(name) for name in fields) + 1
    value_width = max(len(str(f["value"] if f["value"] is not None else "-")) for f in fields.values())
    for name, item in fields.items():
        value = item["value"] if item["value"] is not None else "-"
        lines.append(f"  {name + ':':<{width}} {value!s:<{value_width}}  from {item['from']}")
    custom = document["customImages"]
    lines.append("customImages:")
    rows = [("enabled", str(custom["enabled"]["value"]).lower(), custom["enabled"]["from"])]
    rows += [(component, item["value"], item["from"]) for component, item in custom["images"].items()]
    name_width = max(len(name) for name, _, _ in rows) + 1
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, source in rows:
        lines.append(f"  {name + ':':<{name_width}} {value:<{value_width}}  from {source}")
    applied = ", ".join(document["applied"]) or "none (built-in defaults only)"
    lines.append(f"applied: {applied}")
    blocked = document["blocked"] + document["blockedBelow"]
    if blocked:
        lines.append("blocked:")
        for b in blocked:
            lines.append(
                f"  ChaosImageRegistry {b['resource']} ({b['scope']}) is blocked by "
                f"ChaosImageRegistry {b['blockedBy']} ({b['blockerScope']}, allowOverrides false)"
            )
    else:
        lines.append("blocked: none")
    for problem in document["problems"]:
        lines.append(f"problem: {problem}")
    for note in document["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded, cluster = load_source(args, err)
    config = loaded.compile()
    if args.pod is not None:
        return explain_pod(args, loaded, cluster, out, err)
    scope = _explain_scope(args, loaded, err)
    effective = config.effective(scope)
    blocked_below = []
    for entry in sorted(config.index.entries(), key=lambda e: (e.scope, e.name)):
        if scope.is_ancestor_of(entry.scope) and (blocked := config.index.blocked(entry)) is not None:
            blocked_below.append(
                {
                    "resource": blocked.resource,
                    "scope": str(blocked.scope),
                    "blockedBy": blocked.blocker,
                    "blockerScope": str(blocked.blocker_scope),
                }
            )
    notes = []
    if args.namespace is not None and opted_out(loaded.namespaces.get(args.namespace)):
        notes.append(
            f"namespace {args.namespace} is opted out ({INJECT_LABEL}=false): its pods are never mutated"
        )
    if not effective.applied and not config.defaults.rewrite_unconfigured_scopes:
        notes.append(
            f"no ChaosImageRegistry covers scope {scope}: its chaos pods are admitted unchanged "
            "(rewriteUnconfiguredScopes in the defaults would apply the registry above)"
        )
    document = explain_document(effective, blocked_below, notes)
    out.write(json.dumps(document, indent=2) + "\n" if args.output == "json" else _explain_text(document))
    return EXIT_OK


DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def _docker_hub_library_warning(effective: Effective) -> str | None:
    """Docker Hub without an account puts every image into its official `library/` namespace."""
    if effective.server not in DOCKER_HUB_HOSTS or effective.registry_account:
        return None
    return (
        f"registry server {effective.server} with an empty account: images would be rewritten to "
        f"{effective.server}/<name>, which Docker Hub reads as its official library/<name> images, "
        "not your organisation's; set registry.account"
    )


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = load_config(args.config)
    config = loaded.compile()
    problems: list[str] = []
    warnings: list[str] = []
    for entry in sorted(config.index.entries(), key=lambda e: (e.scope, e.name)):
        where = loaded.sources[f"ChaosImageRegistry/{entry.name}"]
        if (conflict := config.index.conflict(entry)) is not None:
            warnings.append(f"{where} (ChaosImageRegistry {entry.name}): Conflicting: {conflict.message()}")
        elif (blocked := config.index.blocked(entry)) is not None:
            warnings.append(f"{where} (ChaosImageRegistry {entry.name}): Blocked: {blocked.message()}")
        effective = config.effective(entry.scope)
        for problem in effective.problems:
            problems.append(f"{where} (ChaosImageRegistry {entry.name}): {problem}")
        if (hub := _docker_hub_library_warning(effective)) is not None:
            warnings.append(f"{where} (ChaosImageRegistry {entry.name}): {hub}")
    for name, labels in sorted(loaded.namespaces.items()):
        binding = scope_from_labels(labels, config.defaults.default_account)
        where = loaded.sources[f"Namespace/{name}"]
        if binding.warning:
            warnings.append(f"{where} (Namespace {name}): {binding.warning}")
        for problem in config.effective(binding.scope).problems:
            problems.append(f"{where} (Namespace {name}, scope {binding.scope}): {problem}")
    for warning in warnings:
        _warn(warning, err)
    if problems:
        for problem in dict.fromkeys(problems):
            print(f"error: {problem}", file=err)
        return EXIT_BAD_INPUT
    defaults = "ConfigMap chaos-registry-defaults" if loaded.defaults_document is not None else "built-in"
    out.write(
        f"ok: {len(loaded.registries)} ChaosImageRegistry, {len(loaded.namespaces)} Namespace, "
        f"defaults {defaults}\n"
    )
    if args.strict and warnings:
        return EXIT_BAD_INPUT
    return EXIT_OK


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        required=True,
        metavar="CONFIG",
        help="YAML file or folder of ChaosImageRegistry, Namespace and defaults ConfigMap documents "
        f"(repeatable; a mounted ConfigMap folder is read once; {INPUT_LIMIT_TEXT})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chaos-registry",
        description="Make every chaos-experiment pod pull its images from its organisation's registry.",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mutate = commands.add_parser("mutate", help="print a pod as the webhook would admit it", epilog=EPILOG)
    _add_config(mutate)
    mutate.add_argument(
        "pod", metavar="POD_FILE", help=f"a Pod in YAML or JSON; - reads stdin ({INPUT_LIMIT_TEXT})"
    )
    mutate.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    mutate.add_argument(
        "--patch", action="store_true", help="print the RFC 6902 JSON Patch instead of the pod"
    )
    mutate.set_defaults(handler=cmd_mutate)

    explain = commands.add_parser(
        "explain", help="print the effective registry of a scope and where it comes from", epilog=EPILOG
    )
    add_source_arguments(explain)
    target = explain.add_mutually_exclusive_group(required=True)
    target.add_argument("--namespace", metavar="NAME", help="the scope bound by this namespace's labels")
    target.add_argument("--scope", metavar="ACCOUNT[/ORG[/PROJECT[/INFRA]]]", help="a scope")
    target.add_argument(
        "--pod",
        metavar="NAMESPACE/NAME",
        help="with --cluster: a pod's recorded original images and scope, and what the webhook decided",
    )
    explain.add_argument("-o", "--output", choices=("text", "json"), default="text")
    explain.set_defaults(handler=cmd_explain)

    validate = commands.add_parser(
        "validate", help="check every document as the API server and resolver would", epilog=EPILOG
    )
    _add_config(validate)
    validate.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too (blocked, conflicting)"
    )
    validate.set_defaults(handler=cmd_validate)

    add_registry_commands(commands)

    serve = commands.add_parser(
        "serve",
        help="run the admission webhook and its operator (needs a cluster)",
        description="Run the mutating admission webhook: HTTPS admission server, watches of "
        "ChaosImageRegistry resources, namespaces and the defaults ConfigMap, certificates, and "
        "(one replica, by Lease) status and pull-secret copies.",
        epilog="Exit codes: 0 stopped, 1 could not start (one line: kubeconfig, cluster, certificate "
        "files, port), 2 usage.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)

    check = commands.add_parser(
        "check-admission",
        help="dry-run a chaos pod through the installed webhook and check it comes back rewritten "
        "(the Helm chart's test; needs a cluster)",
        description="Create a LitmusChaos runner pod with dryRun=All in NAMESPACE and check that the "
        "API server returns it rewritten to REGISTRY (the ChaosImageRegistry covering NAMESPACE sets "
        "it). Asks again until --timeout while the webhook is starting or has not seen its "
        "configuration. Exit 0 rewritten, 1 not.",
    )
    check.add_argument("--namespace", required=True, help="a namespace the webhook selects")
    check.add_argument(
        "--expect-registry",
        required=True,
        metavar="SERVER[/ACCOUNT]",
        help="the registry (server and account) the chaos pod must be rewritten to",
    )
    check.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to keep asking (default %(default)s)"
    )
    check.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"
    )
    check.set_defaults(handler=cmd_check_admission)
    return parser


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    err = err or sys.stderr or open(os.devnull, "w")  # noqa: SIM115 (stderr closed: nowhere to say it)
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "cluster") and bool(args.config) == bool(args.cluster):
        parser.error(f"{args.command}: give either -c CONFIG or --cluster")
    if out is None:
        print("error: cannot write output: standard output is closed", file=err)
        return EXIT_BAD_INPUT
    try:
        result: int = args.handler(args, out, err)
        out.flush()
        return result
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=err)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        if out is sys.stdout:
            _discard_stdout()
        return EXIT_OK
    except OSError as error:
        # Output that cannot be written (a full disk, /dev/full, a closed pipe of another kind).
        if out is sys.stdout:
            _discard_stdout()
        print(f"error: cannot write output: {error.strerror or error}", file=err)
        return EXIT_BAD_INPUT
    except (MemoryError, RecursionError) as error:
        print(f"error: input too large to process ({type(error).__name__})", file=err)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug; still one line, never a traceback
        print(
            f"error: internal error ({type(error).__name__}: {' '.join(str(error).split())[:200]}); "
            "please report it",
            file=err,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
