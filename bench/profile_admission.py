"""Where one admission request's time goes in `chaos-registry serve`.

Two views of the same path:

1. In process, without HTTP or TLS: the stages of AdmissionHandler.handle timed one by one over the
   bench bodies (JSON decode, checks, the decision, the patch and response encoding, metrics), in
   microseconds per request.
2. The whole server under load: a fresh local control plane (K = 10, as `make bench`), serve pinned
   to CPU 1, the Go load generator on CPU 0, py-spy sampling serve; the samples are grouped by the
   layer they were taken in (event loop and HTTP parsing, TLS, our handler's stages, the rest).

    .venv/bin/python -m bench.profile_admission                 # both, hce-fault, c=8, 20 s
    .venv/bin/python -m bench.profile_admission --stages-only   # 1 only (seconds, no cluster)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import corpus, service_bench, versus_go

# py-spy frames (function (file)) grouped by the layer they belong to; the first match wins,
# scanning a stack from its leaf.
LAYERS = (
    ("TLS (ssl module: read, write, handshake)", ("ssl.py", "sslproto.py", "_ssl")),
    ("JSON decode (orjson.loads via parse_review)", ("parse_review",)),
    ("JSON encode of the response (orjson.dumps, base64)", ("encode_response",)),
    ("decision: classify, resolve, patch (core)", ("webhook/core/",)),
    ("metrics", ("metrics.py", "prometheus_client")),
    ("our handler, the rest", ("webhook/service/admission/handler.py", "admission/decision.py")),
    ("HTTP layer (aiohttp: parsing, routing, response)", ("aiohttp/", "multidict", "yarl")),
    ("HTTP layer (http11: parsing, writing)", ("http11.py",)),
    ("event loop (uvloop, asyncio)", ("uvloop", "asyncio/")),
)


def _stage_timings(templates: dict[str, corpus.Template], rounds: int) -> dict[str, dict[str, float]]:
    """CPU microseconds per request of each stage of the handler, per body, in this process."""
    from webhook.service.admission.decision import decide
    from webhook.service.admission.review import encode_response, parse_review

    snapshot = _bench_snapshot()
    handler = _handler(snapshot)
    clock = time.process_time_ns  # CPU time: other processes on a shared machine do not count
    out: dict[str, dict[str, float]] = {}
    for kind in versus_go.BODIES:
        bodies = _bodies(templates[kind], rounds)
        timings: dict[str, float] = collections.defaultdict(float)
        for body in bodies:
            t0 = clock()
            request = parse_review(body)
            t1 = clock()
            decision = decide(request, snapshot, "Fail")
            t2 = clock()
            encode_response(request.uid, decision)
            t3 = clock()
            timings["decode + checks (parse_review)"] += t1 - t0
            timings["decision (decide: classify, resolve, patch)"] += t2 - t1
            timings["encode the response (patch, base64, JSON)"] += t3 - t2
        loop = asyncio.new_event_loop()
        began = clock()
        for body in bodies:
            loop.run_until_complete(handler.handle(body))
        timings["whole AdmissionHandler.handle (with metrics, in an event loop)"] = clock() - began
        loop.close()
        out[kind] = {k: round(v / len(bodies) / 1000, 1) for k, v in timings.items()}
    return out


def _bodies(template: corpus.Template, count: int) -> list[bytes]:
    namespaces = versus_go.private_namespaces()
    stream = corpus.RequestStream([(template, namespaces[i % 2]) for i in range(count)], 1)
    return [stream()[0] for _ in range(count)]


def _bench_snapshot() -> Any:
    """The snapshot serve would build for the bench configuration's first 10 scopes."""
    from webhook.core.loader import parse_registry
    from webhook.core.models import ChaosImageRegistry, load_defaults
    from webhook.core.resolver import RegistryEntry
    from webhook.core.snapshot import CompiledConfig, Snapshot

    configuration = corpus.Configuration(10)
    parsed = [parse_registry(body) for body in configuration.registries()]
    entries = [RegistryEntry.from_resource(p) for p in parsed if isinstance(p, ChaosImageRegistry)]
    namespaces = {body["metadata"]["name"]: body["metadata"]["labels"] for body in configuration.namespaces()}
    return Snapshot(CompiledConfig(load_defaults(), entries), namespaces)


def _handler(snapshot: Any) -> Any:
    from webhook.service.admission.handler import AdmissionHandler

    return AdmissionHandler(lambda: snapshot)


def _layer(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other (interpreter, idle)"


def _py_spy(pid: int, seconds: float, out: Path) -> dict[str, float]:
    subprocess.run(
        [
            sys.executable.replace("python", "py-spy"),
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )
    counts: dict[str, float] = collections.defaultdict(float)
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[_layer(stack)] += int(n)
        total += int(n)
    return {k: round(100 * v / total, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


async def _under_load(args: argparse.Namespace) -> dict[str, Any]:
    from bench.apiserver import Api
    from controlplane import ControlPlane, ensure_binaries

    _, loadgen_binary = versus_go.build()
    logs = corpus.REPO / ".cache" / "bench" / "profile"
    logs.mkdir(parents=True, exist_ok=True)
    with ControlPlane(ensure_binaries(quiet=True)) as control_plane:
        async with Api(control_plane) as api:
            await service_bench.prepare_cluster(control_plane, api)
            templates = await service_bench.build_templates(api)
            await service_bench.grow_configuration(api, 0, 10)
            service_bench.pin_control_plane(control_plane, {service_bench.CLIENT_CPU})
            async with service_bench.serve(control_plane, logs, "direct", 10, 60.0) as (webhook, _):
                ca = logs / "ours-ca.pem"
                ca.write_bytes(await api.webhook_ca_bundle(service_bench.CONFIG_NAME) or b"")
                target = versus_go.Target("ours", webhook.port, webhook.pid, ca, service_bench.SERVER_CPU)
                body = versus_go.write_bodies(
                    templates[args.body], versus_go.private_namespaces(), logs / "body.jsonl", 7
                )
                loadgen = versus_go.LoadGenerator(loadgen_binary, service_bench.CLIENT_CPU)
                loadgen.run(target, body, args.concurrency, 2.0, check=True)
                load = asyncio.create_task(
                    asyncio.to_thread(loadgen.run, target, body, args.concurrency, args.seconds + 2)
                )
                await asyncio.sleep(1.0)
                layers = await asyncio.to_thread(_py_spy, webhook.pid, args.seconds, logs / "py-spy.txt")
                run = await load
                return {
                    "templates": templates,
                    "layers": layers,
                    "rps": round(run.rps),
                    "cpu_ms_per_1k": round(run.cpu_ms_per_1k),
                    "raw": str(logs / "py-spy.txt"),
                }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--body", choices=versus_go.BODIES, default="hce-fault")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stages-only", action="store_true")
    args = parser.parse_args()
    templates: dict[str, corpus.Template] | None = None
    if not args.stages_only:
        result = asyncio.run(_under_load(args))
        templates = result.pop("templates")
        print(
            f"under load ({args.body}, c={args.concurrency}): {result['rps']} req/s, "
            f"{result['cpu_ms_per_1k']} CPU ms per 1k; py-spy samples by layer (% of samples):"
        )
        for layer, share in result["layers"].items():
            print(f"  {share:5.1f}%  {layer}")
        print(f"  (raw stacks: {result['raw']})")
    if templates is None:
        pods = corpus.pods()
        templates = {
            k: corpus.Template(k, corpus.admission_object(pods[k], pods[k])) for k in versus_go.BODIES
        }
    print("in process, microseconds per request:")
    for kind, stages in _stage_timings(templates, 4000).items():
        print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
