"""What K registries and K bound namespaces cost serve's state, measured in process, without an apiserver.

`make bench` measures K = 100,000 end to end (creating 200,000 objects through the apiserver takes
minutes even on a quiet machine). This probe feeds the bench configuration's registries and
namespaces (bench/corpus.py, as the watch would hand them over) straight into `ConfigState`, builds
the snapshot, then admits one chaos pod per namespace (the first-touch sweep of `make bench`), and
reports CPU seconds and the resident set after each phase, plus where the memory went
(tracemalloc, by file). The process imports serve's modules first, so its starting RSS is close to
serve's before it lists anything.

    .venv/bin/python -m bench.scale_probe --scopes 10000,100000
    .venv/bin/python -m bench.scale_probe --scopes 100000 --tracemalloc
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import sys
import time
import tracemalloc
from typing import Any

import orjson

from bench import corpus, procstat
from webhook.service import operator  # noqa: F401  (serve's imports: the baseline RSS)
from webhook.service.admission.review import parse_review
from webhook.service.state import ConfigState


def _phase(name: str, began_cpu: float, results: dict[str, Any]) -> float:
    gc.collect()
    now = time.process_time()
    results[name] = {
        "cpu_s": round(now - began_cpu, 2),
        "rss_mib": round(procstat.rss_mib(os.getpid()), 1),
        "peak_rss_mib": round(procstat.peak_rss_mib(os.getpid()), 1),
    }
    print(f"  {name}: {results[name]}", flush=True)
    return now


async def probe(scopes: int, trace: bool) -> dict[str, Any]:
    configuration = corpus.Configuration(scopes)
    results: dict[str, Any] = {"scopes": scopes}
    cpu = _phase("imported", time.process_time(), results)
    if trace:
        tracemalloc.start(1)
    state = ConfigState(rebuild_delay=3600)  # one rebuild at the end, as after the initial listing
    # One object at a time, as a paged listing hands them over (a list of K bodies would be the peak).
    for index, scope in enumerate(itertools.islice(corpus.scopes(), scopes)):
        body = corpus.registry_body(index, scope)
        body["metadata"].update(generation=1, resourceVersion=str(index + 1), uid=f"uid-{index}")
        # A status as the writer writes it: the state keeps it compressed.
        body["status"] = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
        state.upsert_registry(orjson.loads(orjson.dumps(body)))  # a fresh decoded object, as a watch has
    cpu = _phase("registries fed", cpu, results)
    for scope in itertools.islice(corpus.scopes(), scopes):
        body = corpus.namespace_body(scope)
        state.upsert_namespace(body["metadata"]["name"], dict(body["metadata"]["labels"]))
    cpu = _phase("namespaces fed", cpu, results)
    snapshot = state.rebuild()
    cpu = _phase("snapshot built (ready)", cpu, results)
    pods = corpus.pods()
    chaos = [k for k in corpus.CHAOS_WEIGHTS if k in pods]
    templates = [corpus.Template(k, corpus.admission_object(pods[k], pods[k])) for k in chaos]
    stream = corpus.RequestStream.sweep({t.kind: t for t in templates}, configuration.namespace_names(), 1)
    patched = 0
    for _ in range(len(stream)):
        request_body, _tag = stream()
        request = parse_review(request_body)
        patched += bool(snapshot.admit(request.pod, request.namespace).patch)
    cpu = _phase("first touch of every scope", cpu, results)
    results["patched"] = patched
    if trace:
        stats = tracemalloc.take_snapshot().statistics("lineno")
        top = [
            (str(s.traceback[0]).split("site-packages/")[-1].split("gobench/")[-1], s.size / 2**20)
            for s in stats[:12]
        ]
        results["tracemalloc_top_mib"] = [(name, round(mib, 1)) for name, mib in top]
        for name, mib in top:
            print(f"    {mib:7.1f} MiB  {name}")
        tracemalloc.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scopes", default="100000", help="K, one probe per value (fresh process each)")
    parser.add_argument("--tracemalloc", action="store_true", help="where the memory went, by file")
    args = parser.parse_args()
    values = [int(x) for x in args.scopes.split(",")]
    if len(values) > 1:
        import subprocess

        for value in values:
            extra = ["--tracemalloc"] if args.tracemalloc else []
            subprocess.run(
                [sys.executable, "-m", "bench.scale_probe", "--scopes", str(value), *extra], check=True
            )
        return 0
    print(f"K={values[0]:,}:", flush=True)
    result = asyncio.run(probe(values[0], args.tracemalloc))
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
