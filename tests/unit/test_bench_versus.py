"""The side-by-side bench's arithmetic and charts (bench/versus_go.py, bench/charts.py)."""

from pathlib import Path

import pytest

from bench import charts, corpus, growth, loadgen, procstat, service_bench, versus_go


def _run(server: str, rps: float, p99: float = 1.0) -> versus_go.Run:
    count = int(rps)
    return versus_go.Run(server, {"rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "count": count}, count / 1000)


def test_ratio_is_the_median_of_the_pairs_ratios():
    cell = versus_go.VersusCell("hce-fault", 8, 10)
    # Pairs (ours, go): a disturbed pair slows both sides; the median pair decides.
    for ours, go in ((900.0, 1000.0), (500.0, 400.0), (1100.0, 1000.0)):
        cell.runs += [_run("go", go), _run("ours", ours)]
    row = cell.row()
    assert row["ratio_runs"] == [0.9, 1.25, 1.1]
    assert row["ratio_vs_go"] == 1.1
    assert row["go_reference_rps"] == 1000.0
    assert row["rps"] == 900.0
    assert row["cpu_ms_per_1k"] == 1000.0


def test_bodies_are_one_review_a_line_in_private_namespaces(tmp_path: Path):
    pods = corpus.pods()
    template = corpus.Template("hce-fault", corpus.admission_object(pods["hce-fault"], pods["hce-fault"]))
    namespaces = versus_go.private_namespaces()
    assert namespaces == ["bench-a0-o0", "bench-a0-o0-p0-i2"]
    for index in versus_go.PRIVATE_SCOPE_INDEXES:
        registry = corpus.registry_body(index, corpus.Configuration(index + 1).scopes()[index])
        assert registry["spec"]["registry"]["type"] == "Private"
    lines = versus_go.write_bodies(template, namespaces, tmp_path / "b.jsonl", 3).read_bytes().splitlines()
    assert len(lines) == versus_go.BODY_VARIANTS
    uids = {line.split(b'"uid":"')[1][:36] for line in lines}
    assert len(uids) == len(lines)
    assert b'"namespace":"bench-a0-o0-p0-i2"' in lines[1]


def test_charts_are_drawn_from_the_rows(tmp_path: Path):
    scale = [
        {"scopes": k, "concurrency": c, "p99_ms": 1.0 + c / 10, "rss_mib": 100.0 + k / 1000}
        for k in (10, 1000)
        for c in (1, 8)
    ]
    versus = [
        {"body": b, "concurrency": c, "rps": 100.0 * c, "go_reference_rps": 90.0 * c, "p99_ms": 1.0,
         "go_reference_p99_ms": 1.2}
        for b in versus_go.BODIES
        for c in (1, 8, 32)
    ]  # fmt: skip
    charts.draw(tmp_path, scale, versus)
    for name, _ in charts.CHARTS:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name


def test_readiness_at_the_largest_k_is_the_median_of_the_start_and_its_restarts():
    start = service_bench.Start(
        writer=False,
        engine="direct",
        scopes=service_bench.LARGEST_SCOPES,
        ready_seconds=14.7,
        settle_seconds=0.0,
        cpu_seconds=11.2,
        statuses=0,
        copies=0,
        rss_ready_mib=170.0,
        rss_settled_mib=170.0,
    )
    assert start.ready_text() == "14.7"
    start.add_restarts([8.1, 9.0])
    assert start.ready_seconds == 9.0
    assert start.ready_text() == "9.0 (14.7, 8.1, 9.0)"
    start.ready_seconds = 14.7
    start.add_restarts([8.1])  # one restart failed: the higher of the two
    assert start.ready_text() == "14.7 (14.7, 8.1)"


def _growth_row(p99: float) -> dict[str, float]:
    return {"p99_ms": p99, "cpu_ms_per_1k": 100.0 * p99}


def test_p99_growth_is_the_median_of_the_pairs_ratios():
    cell = growth.GrowthCell(8, 10, 100_000)
    # Pairs (K=10, K=100,000): a slow moment slows both sides of its pair; the median pair decides.
    for small, large in ((1.0, 1.05), (2.0, 2.4), (1.0, 1.08), (1.5, 1.2)):
        cell.pairs.append((_growth_row(small), _growth_row(large)))
    row = cell.row()
    assert row["p99_growth_runs"] == [0.05, 0.2, 0.08, -0.2]
    assert row["p99_growth"] == 0.08  # of four pairs, the higher middle one
    assert row["reference_p99_ms"] == 1.25
    assert row["scopes"] == 100_000 and row["reference_scopes"] == 10


def test_the_growth_target_is_the_paired_median_at_c8():
    cells = [growth.GrowthCell(c, 10, 100_000) for c in (1, 8)]
    cells[0].pairs.append((_growth_row(1.0), _growth_row(1.5)))  # c=1 is shown, not judged
    cells[1].pairs.append((_growth_row(1.0), _growth_row(1.09)))
    name, limit, measured, met = service_bench.paired_growth_target(cells)
    assert met and limit == "<= +10%"
    assert "c=8: 1.00 -> 1.09 ms (+9.0%)" in measured and "median of 1" in name
    cells[1].pairs.append((_growth_row(1.0), _growth_row(1.2)))
    assert not service_bench.paired_growth_target(cells)[3]


def _cell(others: float, control_plane: float) -> service_bench.Cell:
    """A 5 s run at c = 8 where others took `others` s of the server's core and the control plane
    `control_plane` s of the client's."""
    return service_bench.Cell(
        engine="direct",
        concurrency=8,
        scopes=10,
        result=loadgen.LoadResult(8),
        window=5.0,
        cpu_seconds=4.9,
        client_cpu_seconds=2.5,
        others_cpu_seconds=others,
        control_plane_cpu_seconds=control_plane,
    )


def test_a_run_is_disturbed_by_others_on_the_server_core_or_the_control_plane_on_the_client_core():
    assert _cell(0.1, 0.2).disturbance() is None  # 2% and 4%: an idle control plane
    assert "took 10% of CPU 1" in (_cell(0.5, 0.0).disturbance() or "")
    assert "took 40% of CPU 0, the load generator's" in (_cell(0.0, 2.0).disturbance() or "")


async def test_a_disturbed_run_is_measured_again_once_both_cores_are_quiet(monkeypatch):
    control_plane_seconds = iter([2.0, 2.0, 0.1, 3.0, 2.0, 2.5])
    waits: list[dict[int, float]] = []

    async def measure(*args, warmup, **kwargs):
        return _cell(0.0, next(control_plane_seconds))

    def wait_cpus_quiet(limits, limit):
        waits.append(dict(limits))
        return 3.0

    monkeypatch.setattr(service_bench, "measure", measure)
    monkeypatch.setattr(service_bench.procstat, "wait_cpus_quiet", wait_cpus_quiet)
    run = await service_bench.measure_undisturbed(3, warmup=1.0)
    assert run.attempts == 3 and run.control_plane_cpu_seconds == 0.1
    quiet = {service_bench.SERVER_CPU: 0.05, service_bench.CLIENT_CPU: 0.10}
    assert waits == [quiet, quiet]
    # Disturbed every time: no wait after the last attempt, and the least disturbed is kept.
    waits.clear()
    run = await service_bench.measure_undisturbed(3, warmup=1.0)
    assert run.attempts == 3 and run.control_plane_cpu_seconds == 2.0 and waits == [quiet, quiet]


def test_waiting_for_quiet_cores_ends_when_they_are_quiet_or_at_the_limit():
    assert procstat.wait_cpus_quiet({0: 1.01}, window=0.05, limit=5.0) < 1.0  # never busier than 100%
    assert procstat.wait_cpus_quiet({0: 0.0}, window=0.05, limit=0.2) >= 0.2  # never under 0%


def test_a_negative_number_of_growth_pairs_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        service_bench.parse_args(["--growth-pairs", "-1"])
    assert "--growth-pairs: -1 is below 0 (0 skips the pairs)" in capsys.readouterr().err
