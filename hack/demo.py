"""`make demo`: the webhook in a real (local) Kubernetes control plane, end to end, in under a minute.

1. builds or reuses etcd, kube-apiserver, kubectl and helm (controlplane/build.sh; progress shown);
2. starts a throwaway control plane (etcd + kube-apiserver as local processes, no container engine);
3. installs the Helm chart's objects (`helm template` + `kubectl apply --server-side`: the real
   apiserver validates every object). The chart's Deployment is accepted but its pods never run,
   because this control plane has no nodes; so:
4. runs `chaos-registry serve` as a local process that takes over the chart's
   MutatingWebhookConfiguration (same name, its own URL and CA);
5. applies examples/config (namespaces bound to scopes, ChaosImageRegistry resources) and creates
   the chaos pods of examples/pods as HCE and LitmusChaos would (`kubectl create`);
6. prints, read back from the apiserver, every container's original and admitted image and the
   pod's pull secrets, then the registries' status and the pull-secret copies;
7. stops everything and removes every temporary file.

With the real-node tier (root, `controlplane.node`; `DEMO_NODE=0` turns it off), the cluster has
one node and a local registry, the example registries point at that registry, and the table gains
what the kubelet made of each pod: its phase before the webhook (the original images cannot be
pulled here) and after. When another run holds the machine's node, the demo is admission-only
unless `DEMO_NODE_WAIT=<seconds>` says to wait for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python hack/demo.py` puts hack/, not the repository, on the path
    sys.path.insert(0, str(REPO))

from controlplane import ControlPlane, ControlPlaneError, ensure_binaries  # noqa: E402
from controlplane.node import NodeCluster, NodeError, waiting_reasons  # noqa: E402
from controlplane.webhook import WebhookProcess, WebhookProcessError  # noqa: E402

CHART = REPO / "charts" / "chaos-registry-webhook"
EXAMPLES = REPO / "examples"
NAMESPACE = "chaos-system"
RELEASE = "chaos-registry-webhook"
ORIGINAL_IMAGES = "chaosregistry.io/original-images"
SOURCE = "chaosregistry.io/source"
STARTED = time.monotonic()

T = TypeVar("T")


def step(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Row:
    pod: str
    container: str
    original: str
    admitted: str
    pull_secrets: str
    before: str = ""
    after: str = ""


def install_chart(plane: ControlPlane) -> None:
    """The chart's objects, as `helm template` renders them, applied and validated server-side."""
    rendered = subprocess.run(
        [
            str(plane.bin_dir / "helm"), "template", RELEASE, str(CHART),
            "--namespace", NAMESPACE, "--include-crds", "--skip-tests",  # helm test objects: not the install
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    crds = [doc for doc in documents if doc["kind"] == "CustomResourceDefinition"]
    others = [doc for doc in documents if doc["kind"] != "CustomResourceDefinition"]
    plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crds))
    for crd in crds:
        plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
        )
    plane.kubectl("create", "namespace", NAMESPACE)
    applied = plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(others)).stdout
    for line in applied.strip().splitlines():
        print(f"         {line}")


def bound_pod_is_mutated(plane: ControlPlane) -> bool | None:
    """Dry-run an example chaos pod until the webhook answers for it (configurations load lazily)."""
    result = plane.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        str(EXAMPLES / "pods" / "hce-ddcr-runner.yaml"),
        check=False,
    )
    if result.returncode != 0:
        return None
    return True if ORIGINAL_IMAGES in json.loads(result.stdout)["metadata"].get("annotations", {}) else None


def containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod["spec"].get(key) or []


def rows_for(label: str, example: dict[str, Any], stored: dict[str, Any]) -> list[Row]:
    """One row per container image and per image-carrying env var that the webhook may rewrite.

    Originals come from the chaosregistry.io/original-images annotation the webhook adds, else
    (untouched pods) from the example file.
    """
    annotations = stored["metadata"].get("annotations") or {}
    recorded = json.loads(annotations.get(ORIGINAL_IMAGES, "{}"))
    originals = {c["name"]: c for c in containers(example)}
    secrets = ", ".join(s["name"] for s in stored["spec"].get("imagePullSecrets") or []) or "-"
    rows = []
    for container in containers(stored):
        original = recorded.get(container["name"], originals[container["name"]]["image"])
        rows.append(Row(label, container["name"], original, container["image"], secrets))
        for env in container.get("env") or []:
            key = f"{container['name']}/env/{env['name']}"
            if key in recorded:
                rows.append(Row(label, f"  env {env['name']}", recorded[key], env["value"], secrets))
    return rows


def print_table(rows: list[Row], *, phases: bool = False) -> None:
    header = Row(
        "POD (examples/pods)", "CONTAINER", "ORIGINAL IMAGE", "ADMITTED IMAGE", "PULL SECRETS",
        "ON THE NODE BEFORE", "AFTER",
    )  # fmt: skip
    fields: tuple[str, ...] = ("pod", "container", "original", "admitted", "pull_secrets")
    if phases:
        fields = ("pod", "container", "original", "before", "admitted", "after", "pull_secrets")
    widths = {f: max(len(getattr(r, f)) for r in [header, *rows]) for f in fields}
    previous = None
    for index, row in enumerate([header, *rows]):
        values = [getattr(row, f) for f in fields]
        if index > 0:
            if row.admitted == row.original:
                values[fields.index("admitted")] = "(unchanged)"
            if row.pod == previous:  # the pod, its phases and its pull secrets once per pod
                for field in ("pod", "pull_secrets", "before", "after"):
                    if field in fields:
                        values[fields.index(field)] = ""
            previous = row.pod
        print("  ".join(v.ljust(widths[f]) for v, f in zip(values, fields, strict=True)).rstrip())


def create_example_pods(plane: ControlPlane, created: dict[str, tuple[str, str]] | None = None) -> list[Row]:
    """Create every example pod; `created` collects example name -> (namespace, pod name)."""
    rows: list[Row] = []
    for path in sorted((EXAMPLES / "pods").glob("*.yaml")):
        example = yaml.safe_load(path.read_text())
        result = plane.kubectl("create", "-o", "json", "-f", str(path))
        stored = json.loads(result.stdout)
        where = f"{stored['metadata']['namespace']}/{stored['metadata']['name']}"
        step(f"created {path.relative_to(REPO)} -> pod {where}")
        for warning in result.stderr.strip().splitlines():
            print(f"         {warning}")
        rows.extend(rows_for(path.stem, example, stored))
        if created is not None:
            created[path.stem] = (stored["metadata"]["namespace"], stored["metadata"]["name"])
    return rows


# -- the real-node variant ------------------------------------------------------------------------

FINAL_PHASES = {"Running", "Succeeded", "Failed"}
PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}


def node_wanted() -> bool:
    return os.environ.get("DEMO_NODE", "1") != "0" and os.geteuid() == 0


def outcome(cluster: NodeCluster, namespace: str, name: str) -> str | None:
    """The pod's phase once the kubelet has decided (None while it is still deciding)."""
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    pod = json.loads(result.stdout)
    reasons = [r for r in waiting_reasons(pod) if r in PULL_FAILURES]
    if reasons:
        return reasons[0]
    phase: str = pod.get("status", {}).get("phase", "")
    inits = pod.get("status", {}).get("initContainerStatuses") or []
    if phase == "Pending" and any("running" in s.get("state", {}) for s in inits):
        return "Init:Running"  # pulled and started; the stand-in init container idles
    if phase in FINAL_PHASES and all(
        "running" in s.get("state", {}) or "terminated" in s.get("state", {})
        for s in pod["status"].get("containerStatuses") or [{}]
    ):
        return phase
    return None


def outcomes(cluster: NodeCluster, pods: dict[str, tuple[str, str]], timeout: float) -> dict[str, str]:
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(pods) and time.monotonic() < deadline:
        for example, (namespace, name) in pods.items():
            if example not in found and (result := outcome(cluster, namespace, name)) is not None:
                found[example] = result
        time.sleep(0.3)
    return {example: found.get(example, "Pending (timed out)") for example in pods}


def local_registry_config(cluster: NodeCluster) -> str:
    """examples/config with every registry moved to the local one (private, secret acme-pull)."""
    documents = []
    host = cluster.registry.host
    for path in sorted((EXAMPLES / "config").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            spec = doc.get("spec") or {}
            if doc["kind"] == "ChaosImageRegistry" and "registry" in spec:
                server = spec["registry"]["server"]
                spec["registry"]["server"] = host + ("/" + server.split("/", 1)[1] if "/" in server else "")
                spec["registry"].update(type="Private", secretName="acme-pull", secretNamespace=NAMESPACE)
            images = (spec.get("customImages") or {}).get("images") or {}
            for component, image in images.items():
                images[component] = host + "/" + image.split("/", 1)[1]
            documents.append(doc)
    return yaml.safe_dump_all(documents)


def publish_admitted_images(cluster: NodeCluster) -> None:
    """Push the test image under every name the webhook will admit for the example pods."""
    host = cluster.registry.host + "/"
    names: set[str] = set()
    for path in sorted((EXAMPLES / "pods").glob("*.yaml")):
        result = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", str(path), check=False)
        if result.returncode != 0:
            continue
        pod = json.loads(result.stdout)
        for container in containers(pod):
            for image in [container["image"]] + [e.get("value", "") for e in container.get("env") or []]:
                if image.startswith(host) and "@" not in image:
                    names.add(image.removeprefix(host))
    cluster.registry.push_many(cluster.images.busybox, sorted(names))


def run_on_node(workdir: Path, cluster: NodeCluster) -> None:
    plane = cluster.control_plane
    step(
        f"cluster with node {cluster.node_name} up ({cluster.startup_seconds:.1f}s): control plane, "
        f"kubelet, containerd, scheduler, controller manager; registry https://{cluster.registry.host}"
    )
    step("before the webhook: creating the example namespaces and chaos pods, unchanged")
    plane.kubectl("apply", "-f", str(EXAMPLES / "config" / "namespaces.yaml"))
    for line in plane.kubectl("get", "namespaces", "-o", "name").stdout.split():
        if line.startswith("namespace/"):
            namespace = line.removeprefix("namespace/")
            with contextlib.suppress(ControlPlaneError):
                wait_for(
                    lambda ns=namespace: (
                        plane.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0 or None
                    ),
                    15,
                    f"the default ServiceAccount of {namespace}",
                )
    # The ServiceAccounts the example pods name (a chaos platform creates them with its runners).
    for path in sorted((EXAMPLES / "pods").glob("*.yaml")):
        pod = yaml.safe_load(path.read_text())
        account = pod["spec"].get("serviceAccountName")
        if account:
            namespace = pod["metadata"]["namespace"]
            plane.kubectl("create", "serviceaccount", account, "-n", namespace, check=False)
    before_pods: dict[str, tuple[str, str]] = {}
    for path in sorted((EXAMPLES / "pods").glob("*.yaml")):
        pod = yaml.safe_load(path.read_text())
        if "name" in pod["metadata"]:
            pod["metadata"]["name"] += "-before"
        else:
            pod["metadata"]["generateName"] += "before-"
        stored = json.loads(plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(pod)).stdout)
        before_pods[path.stem] = (stored["metadata"]["namespace"], stored["metadata"]["name"])
    # The kubelet tries these pulls while the chart and the webhook are set up: read them after.
    step("installing the Helm chart's objects (helm template | kubectl apply --server-side)")
    install_chart(plane)
    # Its image is not built here (the chart's own tests build it); the local process stands in.
    plane.kubectl("scale", "deployment", "--all", "-n", NAMESPACE, "--replicas=0")
    print("         The chart's Deployment is scaled to 0 (its image is not built by the demo); the")
    print("         webhook runs as a local process instead, with the same configuration.")
    user, password = cluster.registry.credentials()
    plane.kubectl(
        "create", "secret", "docker-registry", "acme-pull", "-n", NAMESPACE,
        f"--docker-server={cluster.registry.host}", f"--docker-username={user}",
        f"--docker-password={password}",
    )  # fmt: skip
    step(f"applying examples/config with every registry moved to {cluster.registry.host} (private)")
    for line in (
        plane.kubectl("apply", "-f", "-", input=local_registry_config(cluster)).stdout.strip().splitlines()
    ):
        print(f"         {line}")
    log = workdir / "serve.log"
    step(f"starting chaos-registry serve (it takes over MutatingWebhookConfiguration {RELEASE})")
    with WebhookProcess(plane.kubeconfig, log, namespace=NAMESPACE, config_name=RELEASE) as webhook:
        wait_for(lambda: bound_pod_is_mutated(plane), 30, "the apiserver to call the webhook")
        before = outcomes(cluster, before_pods, timeout=60)
        step(f"before the webhook, the kubelet could not pull: {sorted(set(before.values()))}")
        publish_admitted_images(cluster)
        step(f"webhook ready at {webhook.url}; creating the chaos pods of examples/pods")
        after_pods: dict[str, tuple[str, str]] = {}
        rows = create_example_pods(plane, after_pods)
        after = outcomes(cluster, after_pods, timeout=60)
        for row in rows:
            row.before, row.after = before[row.pod], after[row.pod]
        print()
        print_table(rows, phases=True)
        print()
        pulls = cluster.registry.pulls(user=user)
        step(
            f"the registry served {len(pulls)} manifest pulls, all as user {user!r} (the copied pull secret)"
        )
        print("         hce-helper pins a digest the demo registry does not hold; not-chaos is no chaos pod;")
        print("         argo-step's init container is the idle test image (no Argo controller in the demo).")
        step("ChaosImageRegistry status (written by the Lease holder) and pull-secret copies")
        show_status(plane)
        print()
        step("stopping the webhook, the node and the control plane")


def show_status(plane: ControlPlane) -> None:
    def all_have_status() -> str | None:
        items = json.loads(plane.kubectl("get", "chaosimageregistries", "-o", "json").stdout)["items"]
        return "ok" if items and all((i.get("status") or {}).get("conditions") for i in items) else None

    try:
        wait_for(all_have_status, 15, "the status of every ChaosImageRegistry")
    except ControlPlaneError as error:
        print(f"         ({error})")
    print(plane.kubectl("get", "chaosimageregistries").stdout.rstrip())
    managed = "app.kubernetes.io/managed-by=chaos-registry-webhook"
    listed = plane.kubectl("get", "secrets", "--all-namespaces", "-l", managed, "-o", "json").stdout
    secrets = json.loads(listed)["items"]
    copies = [
        (s["metadata"]["namespace"], s["metadata"]["name"], s["metadata"]["annotations"][SOURCE])
        for s in secrets
        if SOURCE in (s["metadata"].get("annotations") or {})
    ]
    print()
    if not copies:
        print("no pull-secret copies yet")
    for namespace, name, source in sorted(copies):
        print(f"pull secret {namespace}/{name} copied from {source}")


def run(workdir: Path) -> None:
    if node_wanted():
        step("building or reusing the control-plane and node binaries (a cold build takes minutes, once)")
        try:
            # Another run holding this machine's node makes the demo admission-only at once,
            # unless DEMO_NODE_WAIT (seconds) says to wait for it.
            cluster = NodeCluster(lock_timeout=float(os.environ.get("DEMO_NODE_WAIT", "0"))).start()
        except NodeError as error:
            step(f"no real node for this demo ({str(error).splitlines()[0]}): admission only")
        else:
            try:
                run_on_node(workdir, cluster)
            finally:
                cluster.stop()
            step("done: processes stopped, node cleaned, temporary files removed")
            return
    step("building or reusing the control-plane binaries (a cold build takes minutes, once)")
    bin_dir = ensure_binaries()
    with ControlPlane(bin_dir, startup_timeout=120) as plane:
        step(f"control plane up at {plane.server} (etcd + kube-apiserver, {plane.startup_seconds:.1f}s)")
        step("installing the Helm chart's objects (helm template | kubectl apply --server-side)")
        install_chart(plane)
        print("         The Deployment is accepted, but its pods never run: this control plane has no")
        print("         nodes. The webhook runs as a local process instead, with the same configuration.")
        plane.kubectl(
            "create", "secret", "docker-registry", "acme-pull", "-n", NAMESPACE,
            "--docker-server=registry.retail.acme.corp", "--docker-username=demo", "--docker-password=demo",
        )  # fmt: skip
        step(f"applying {EXAMPLES.relative_to(REPO) / 'config'} and the pull secret {NAMESPACE}/acme-pull")
        for line in plane.kubectl("apply", "-f", str(EXAMPLES / "config")).stdout.strip().splitlines():
            print(f"         {line}")
        log = workdir / "serve.log"
        step(f"starting chaos-registry serve (it takes over MutatingWebhookConfiguration {RELEASE})")
        with WebhookProcess(plane.kubeconfig, log, namespace=NAMESPACE, config_name=RELEASE) as webhook:
            wait_for(lambda: bound_pod_is_mutated(plane), 30, "the apiserver to call the webhook")
            step(f"webhook ready at {webhook.url}; creating the chaos pods of examples/pods")
            rows = create_example_pods(plane)
            print()
            print_table(rows)
            print()
            step("ChaosImageRegistry status (written by the Lease holder) and pull-secret copies")
            show_status(plane)
            print()
            step("stopping the webhook and the control plane")
    step("done: processes stopped, temporary files removed")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="chaos-registry-demo-"))
    # Child processes (the webhook writes its serving certificate to a temporary folder) use ours,
    # which is removed at the end whatever they leave behind.
    os.environ["TMPDIR"] = str(workdir)
    try:
        run(workdir)
    except (ControlPlaneError, WebhookProcessError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None)
        print(f"demo failed: {error}{chr(10) + detail if detail else ''}", file=sys.stderr)
        log = workdir / "serve.log"
        if log.exists():
            print(
                "last lines of the webhook log:\n" + "\n".join(log.read_text().splitlines()[-20:]),
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
