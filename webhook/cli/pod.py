"""`chaos-registry explain --cluster --pod NAMESPACE/NAME`: why a running pod has the images it has.

The webhook records each rewritten image's original (annotation chaosregistry.io/original-images)
and the scope it applied (chaosregistry.io/scope). Putting the originals back and admitting the pod
again under the live configuration shows the decision, and whether it still holds.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any, TextIO

from webhook.core.classifier import CONTAINER_LISTS
from webhook.core.jsonpatch import apply_patch
from webhook.core.loader import ConfigError, LoadedConfig
from webhook.core.models import ORIGINAL_IMAGES_ANNOTATION, SCOPE_ANNOTATION


def _json_annotation(annotations: dict[str, Any], key: str) -> Any:
    raw = annotations.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _images(pod: dict[str, Any]) -> dict[str, str]:
    """Key (`container` or `container/env/VAR`, as the originals annotation) -> image."""
    found: dict[str, str] = {}
    spec = pod.get("spec") or {}
    for list_name in CONTAINER_LISTS:
        for container in spec.get(list_name) or []:
            name = container.get("name")
            if isinstance(container.get("image"), str):
                found[name] = container["image"]
            for variable in container.get("env") or []:
                if isinstance(variable.get("value"), str):
                    found[f"{name}/env/{variable['name']}"] = variable["value"]
    return found


def _restore(pod: dict[str, Any], originals: dict[str, str]) -> dict[str, Any]:
    restored = copy.deepcopy(pod)
    annotations = restored.get("metadata", {}).get("annotations") or {}
    annotations.pop(ORIGINAL_IMAGES_ANNOTATION, None)
    annotations.pop(SCOPE_ANNOTATION, None)
    spec = restored.get("spec") or {}
    for list_name in CONTAINER_LISTS:
        for container in spec.get(list_name) or []:
            name = container.get("name")
            if name in originals:
                container["image"] = originals[name]
            for variable in container.get("env") or []:
                key = f"{name}/env/{variable.get('name')}"
                if key in originals:
                    variable["value"] = originals[key]
    return restored


def pod_document(pod: dict[str, Any], loaded: LoadedConfig, namespace: str) -> dict[str, Any]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    originals = _json_annotation(annotations, ORIGINAL_IMAGES_ANNOTATION)
    originals = originals if isinstance(originals, dict) else {}
    recorded = _json_annotation(annotations, SCOPE_ANNOTATION)
    restored = _restore(pod, originals)
    mutation = loaded.snapshot().admit(restored, namespace)
    now = _images(apply_patch(restored, mutation.patch)) if mutation.patch else _images(restored)
    current = _images(pod)
    components = {
        (r.container if r.env is None else f"{r.container}/env/{r.env}"): r.component
        for r in mutation.rewrites
    }
    images = [
        {
            "key": key,
            "original": originals.get(key, image),
            "admitted": image,
            "component": components.get(key),
            "now": now.get(key, image),
            "unchanged": key not in originals,
        }
        for key, image in current.items()
    ]
    return {
        "pod": f"{namespace}/{(pod.get('metadata') or {}).get('name')}",
        "recordedScope": recorded.get("scope") if isinstance(recorded, dict) else None,
        "recordedRegistries": recorded.get("registries") if isinstance(recorded, dict) else None,
        "chaos": mutation.chaos,
        "reason": mutation.reason,
        "scopeNow": str(mutation.scope) if mutation.scope is not None else None,
        "images": images,
        "warnings": list(mutation.warnings),
        "upToDate": all(item["now"] == item["admitted"] for item in images),
    }


def _text(document: dict[str, Any]) -> str:
    lines = [f"pod: {document['pod']}"]
    if document["recordedScope"] is not None:
        registries = ", ".join(document["recordedRegistries"] or []) or "none"
        lines.append(f"admitted under scope: {document['recordedScope']} (ChaosImageRegistry: {registries})")
    else:
        lines.append("admitted under scope: not recorded (the webhook did not mutate this pod)")
    lines.append(f"decision now: {'chaos pod' if document['chaos'] else 'not mutated'}: {document['reason']}")
    if document["scopeNow"] is not None:
        lines.append(f"scope now: {document['scopeNow']}")
    lines.append("images:")
    for item in document["images"]:
        component = f" [{item['component']}]" if item["component"] else ""
        if item["unchanged"]:
            lines.append(f"  {item['key']}: {item['admitted']} (left unchanged){component}")
        else:
            lines.append(f"  {item['key']}: {item['original']} -> {item['admitted']}{component}")
        if item["now"] != item["admitted"]:
            lines.append(f"    the live configuration would now give {item['now']}")
    for warning in document["warnings"]:
        lines.append(f"warning: {warning}")
    lines.append(
        "up to date: "
        + ("yes" if document["upToDate"] else "no, recreate the pod to apply the live configuration")
    )
    return "\n".join(lines) + "\n"


def explain_pod(
    args: argparse.Namespace, loaded: LoadedConfig, cluster: Any, out: TextIO, err: TextIO
) -> int:
    if cluster is None:
        raise ConfigError(
            [
                "--pod reads the pod from the cluster: add --cluster "
                "(offline, `chaos-registry mutate` shows the decision)"
            ]
        )
    namespace, _, name = args.pod.partition("/")
    if not namespace or not name or "/" in name:
        raise ConfigError([f"--pod: {args.pod!r} must be NAMESPACE/NAME"])
    pod = cluster.pod(namespace, name)
    document = pod_document(pod, loaded, namespace)
    out.write(json.dumps(document, indent=2) + "\n" if args.output == "json" else _text(document))
    return 0
