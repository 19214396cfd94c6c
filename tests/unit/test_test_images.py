"""The node tier publishes a runnable test image under every name the example chaos pods use."""

from __future__ import annotations

from pathlib import Path

import yaml

from controlplane.images import CHAOS_TEST_IMAGES
from controlplane.registry import parse_registry_log

_PODS = Path(__file__).resolve().parent.parent.parent / "examples" / "pods"


def _name_and_tag(image: str) -> str:
    """`<last path segment>:<tag>` of an image reference: its name under a rewritten registry."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last if ":" in last else f"{last}:latest"


def test_every_image_of_the_example_chaos_pods_is_published():
    names: set[str] = set()
    for path in _PODS.glob("*.yaml"):
        pod = yaml.safe_load(path.read_text())
        if pod["metadata"]["name" if "name" in pod["metadata"] else "generateName"].startswith("web"):
            continue  # not a chaos pod: never rewritten
        spec = pod["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            names.add(_name_and_tag(container["image"]))
            for env in container.get("env", []):
                if "/" in env.get("value", "") or env["name"].endswith("_IMAGE"):
                    names.add(_name_and_tag(env["value"]))
    assert names, "no example pods found"
    assert names - set(CHAOS_TEST_IMAGES) == set()


def test_registry_log_lines_become_requests_with_the_user_of_their_request_id():
    log = "\n".join(
        [
            '{"level":"info","msg":"listening on 127.0.0.1:5000, tls"}',
            '{"auth.user.name":"puller","http.request.id":"a","http.request.method":"GET",'
            '"http.request.uri":"/v2/chaos/go-runner/manifests/3.11.0","level":"debug","msg":"GetImageManifest"}',
            '{"http.request.id":"a","http.request.method":"GET","http.request.uri":"/v2/chaos/go-runner/manifests/3.11.0",'
            '"http.response.status":200,"level":"info","msg":"response completed"}',
            '{"http.request.id":"b","http.request.method":"GET","http.request.uri":"/v2/a/b/manifests/sha256:ab",'
            '"level":"error","msg":"error authenticating user \\"eve\\": authentication failure"}',
            '{"http.request.id":"b","http.request.method":"GET","http.request.uri":"/v2/a/b/manifests/sha256:ab",'
            '"level":"warning","msg":"error authorizing context: basic authentication challenge"}',
            "not json at all",
        ]
    )

    first, second = parse_registry_log(log)

    assert (first.status, first.user, first.image, first.kind) == (
        200,
        "puller",
        "chaos/go-runner:3.11.0",
        "manifests",
    )
    assert (second.status, second.user, second.image) == (401, "eve", "a/b@sha256:ab")
