"""The comparison harness end to end, in its reduced form (one seed, two epochs).

The full run (three seeds, twenty epochs, every method) is a benchmark, run by hand and
committed under ``benchmarks/results/``; here the pipeline is checked: the method
list comes from the taxonomy, every job writes its figures, the summary follows its
formula, an interrupted run resumes, and a job runs under torchrun.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import compare
from kdatlas.loader import load

ROOT = Path(__file__).resolve().parents[2]


def test_every_taxonomy_implementation_is_run_or_listed_with_a_reason():
    methods, not_run = compare.methods_of_taxonomy(ROOT)
    ids = [m.id for m in methods]
    assert ids[0] == compare.BASELINE and len(ids) == len(set(ids))
    every = {implementation.id for _, _, implementation in load(ROOT).implementations()}
    assert set(ids[1:]) | set(not_run) == every and not set(ids) & set(not_run)
    assert all(reason.strip() for reason in not_run.values())
    assert {"kd", "dkd", "crd", "dml", "ban"} <= set(ids)  # losses, memory banks, schemes
    assert "glnn" in not_run and "graph" in not_run["glnn"]


def test_the_summary_is_mean_std_and_the_share_of_the_gap_closed():
    def run(method, seed, accuracy):
        return {
            "task": "digits",
            "method": method,
            "seed": seed,
            "accuracy": accuracy,
            "agreement": 0.5,
            "ms_per_step": 2.0,
            "peak_mib": 1.0,
            "teacher_accuracy": 0.9,
        }

    runs = [run("cross-entropy", 0, 0.5), run("cross-entropy", 1, 0.7)]
    runs += [run("kd", 0, 0.7), run("kd", 1, 0.8)]
    kd = compare.summarise(runs)["digits"]["kd"]
    assert kd["accuracy_mean"] == pytest.approx(0.75)
    assert kd["accuracy_std"] == pytest.approx(math.sqrt(0.005))
    # seed 0 closes (0.7-0.5)/(0.9-0.5) = 0.5 of the gap, seed 1 (0.8-0.7)/(0.9-0.7) = 0.5
    assert kd["gap_closed_mean"] == pytest.approx(0.5)
    assert compare.summarise(runs)["digits"]["cross-entropy"]["gap_closed_mean"] == 0.0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compare") / "quick.json"
    assert compare.main(["--quick", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    return json.loads(out.read_text())


def test_the_quick_run_measures_every_method_on_both_tasks(quick_run):
    methods, not_run = compare.methods_of_taxonomy(ROOT)
    assert set(quick_run["not_run"]) == set(not_run)
    assert quick_run["provenance"]["seeds"] == [0] and quick_run["provenance"]["torch"]
    assert quick_run["settings"]["epochs"] == compare.QUICK.epochs
    for task in compare.TASKS:
        summary = quick_run["summary"][task]
        assert set(summary) == {m.id for m in methods}
        for figures in summary.values():
            assert 0.0 <= figures["accuracy_mean"] <= 1.0
            assert figures["ms_per_step_median"] > 0
    assert len(quick_run["runs"]) == 2 * len(methods)
    kd = quick_run["summary"]["digits"]["kd"]
    assert kd["teacher_accuracy"] > kd["accuracy_mean"] > 0.1  # trained (chance: 0.1)


def test_an_interrupted_run_resumes_from_the_jobs_it_wrote(tmp_path):
    out = tmp_path / "resumed.json"
    settings = compare.QUICK
    written = {
        "task": "digits",
        "method": "kd",
        "seed": 0,
        "accuracy": 0.123,  # a value no run gives: it must come from the partial file
        "agreement": 0.2,
        "seconds": 1.0,
        "student_steps": 8,
        "ms_per_step": 125.0,
        "peak_mib": None,
        "teacher_accuracy": 0.9,
        "settings": settings.key(),
    }
    stale = {**written, "method": "cross-entropy", "settings": "other settings"}
    partial = out.with_suffix(".partial.jsonl")
    partial.write_text(json.dumps(written) + "\n" + json.dumps(stale) + "\n{truncated")
    arguments = ["--quick", "--methods", "kd", "--tasks", "digits", "--no-progress"]
    compare.main([*arguments, "--out", str(out), "--device", "cpu"])
    result = json.loads(out.read_text())
    by_method = {run["method"]: run for run in result["runs"]}
    assert by_method["kd"]["accuracy"] == 0.123  # resumed, not run again
    assert result["provenance"]["runs_resumed"] == 1
    assert by_method["cross-entropy"]["accuracy"] != 0.123  # the stale line was run again
    assert not partial.exists()  # a finished run leaves nothing to resume


def test_an_update_reruns_only_the_named_methods_and_records_it(tmp_path):
    out = tmp_path / "updated.json"
    arguments = ["--quick", "--methods", "kd", "dkd", "--tasks", "digits", "--no-progress"]
    compare.main([*arguments, "--out", str(out), "--device", "cpu"])
    before = json.loads(out.read_text())
    for run in before["runs"]:
        if run["method"] in ("kd", "cross-entropy"):
            run["accuracy"] = 0.123  # values no run gives: kept ones stay, re-run ones change
    out.write_text(json.dumps(before))
    compare.main(["--update", "--methods", "kd", "--out", str(out), "--no-progress"])
    after = json.loads(out.read_text())
    by_method = {run["method"]: run for run in after["runs"]}
    assert set(by_method) == {"cross-entropy", "kd", "dkd"} and len(after["runs"]) == 3
    assert by_method["cross-entropy"]["accuracy"] == 0.123  # not named: kept
    assert by_method["kd"]["accuracy"] != 0.123  # named: run again
    assert by_method["dkd"] == next(r for r in before["runs"] if r["method"] == "dkd")
    assert after["provenance"]["commit"] == before["provenance"]["commit"]
    (update,) = after["provenance"]["updates"]
    assert update["methods"] == ["kd"] and update["runs"] == 1
    assert after["summary"]["digits"]["kd"]["accuracy_mean"] == by_method["kd"]["accuracy"]
    assert not list(tmp_path.glob("*.partial.jsonl"))


def test_an_update_needs_methods_and_an_existing_file(tmp_path):
    with pytest.raises(SystemExit, match="--methods"):
        compare.main(["--update", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="does not exist"):
        compare.main(["--update", "--methods", "kd", "--out", str(tmp_path / "x.json")])


def test_a_job_runs_data_parallel_under_torchrun(tmp_path):
    out = tmp_path / "torchrun.json"
    arguments = ["--quick", "--methods", "kd", "--tasks", "digits", "--torchrun", "2"]
    compare.main([*arguments, "--out", str(out), "--no-progress", "--device", "cpu"])
    result = json.loads(out.read_text())
    assert result["provenance"]["processes_per_job"] == 2
    assert {run["method"] for run in result["runs"]} == {"cross-entropy", "kd"}
    assert all(0.0 < run["accuracy"] <= 1.0 for run in result["runs"])
