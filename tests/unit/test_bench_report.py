"""bench.report's page update: a run that measured fewer profiles than docs/benchmarks.md shows leaves the page
as it is (results are not committed, so the others would be dropped) and writes its block apart."""

from __future__ import annotations

import json

from bench import report

MACHINE = {"cpu": "AMD EPYC", "usable_cores": 2, "memory_gb": 23.5, "python": "3.11.7", "sqlite": "3.40.1",
           "redis": "7.0.15", "git": "abc1234"}


def latency_result(stamp: str, rate: float) -> dict:
    burst = {"requests": 2000, "succeeded": 2000, "throughput_per_s": rate, "submit_rate_per_s": rate + 1,
             "latency_ms": {"p50": 1700.0, "p95": 4600.0, "max": 7700.0},
             "order": {"targets_with_several": 111, "requests_on_them": 224, "overlaps": 0, "out_of_order": 0}}
    return {"profile": {"name": "latency"}, "database": "sqlite", "stamp": stamp, "machine": MACHINE,
            "settings": {"latency_ms": 100.0, "in_flight": 8, "sync_workers": 2, "sync_concurrency_per_worker": 2,
                         "provisioning_workers": 2, "provisioning_threads": 16},
            "latency": {"latency_ms_api": 100.0, "burst": burst, "workers": "2 x 16 threads",
                        "sync": {"status": "succeeded", "wall_s": 24.3}, "first_sync": {"wall_s": 18.0},
                        "budget": {"shared_max_in_flight": 48, "sim_max_in_flight": 48}}}


def page(block: str) -> str:
    return f"# Benchmarks\n\n{report.BEGIN}\n\n{block}\n\n{report.END}\n"


def test_a_run_covering_the_page_rewrites_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "1-latency.json").write_text(json.dumps(latency_result("20261207T050715Z", 101.6)))
    docs = tmp_path / "benchmarks.md"
    docs.write_text(page("- `latency` on sqlite (20261206T000000Z): old figures"))
    assert report.update_docs(results, docs, partial=tmp_path / "partial.md") == docs
    text = docs.read_text()
    assert "101.6/s" in text and "old figures" not in text and "| latency | sqlite | applied ≥ 100/s" in text
    assert "0 overlapping, 0 out of order" in text


def test_a_partial_run_leaves_the_page_and_writes_its_block_apart(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "1-latency.json").write_text(json.dumps(latency_result("20261207T050715Z", 101.6)))
    docs = tmp_path / "benchmarks.md"
    before = page("- `large` on sqlite (20261206T033938Z): figures of a run elsewhere\n"
                  "- `latency` on sqlite (20261206T000000Z): old figures")
    docs.write_text(before)
    partial = tmp_path / "runs" / "block.md"
    assert report.update_docs(results, docs, partial=partial) == partial
    assert docs.read_text() == before and "101.6/s" in partial.read_text()
