"""Test records: which implementation a test is about, the file hashes, and when a record is current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kdatlas.site.records import (
    RECORD_DIR,
    files_of,
    implementation_module,
    latest_outcomes,
    read_from,
    read_records,
    record_files,
    sha256_bytes,
)

KD = "reference_impls.sources.logit.kd"
KD_FILE = "reference_impls/sources/logit/kd.py"
KD_TESTS = "tests/reference_impls/sources/logit/test_kd.py"
CONTRACTS = "tests/reference_impls/test_contracts.py"


@pytest.mark.parametrize(
    ("nodeid", "module"),
    [
        (f"{KD_TESTS}::test_hand_value", KD),
        (f"{KD_TESTS}::test_cpu_cuda[bf16]", KD),
        (f"{CONTRACTS}::test_loss_contract[{KD}:KDLoss]", KD),
        (f"{CONTRACTS}::test_cuda_agreement[cuda-{KD}:KDLoss]", KD),
        (f"{CONTRACTS}::test_loss_contract[{KD}:KDLoss-bf16]", KD),
        (
            f"{CONTRACTS}::test_procedure_contract[reference_impls.schemes.online.dml:DML]",
            "reference_impls.schemes.online.dml",
        ),
        ("tests/reference_impls/common/test_data.py::test_split", "reference_impls.common.data"),
        (f"{CONTRACTS}::test_every_implementation_is_covered", None),
        ("tests/kdatlas/test_loader.py::test_not_a_root", None),
        ("tests/site/test_records.py::test_x[reference_impls.x:Y]", "reference_impls.x"),
    ],
)
def test_implementation_module_from_the_file_or_the_parameter_id(nodeid, module):
    assert implementation_module(nodeid) == module


def test_the_conftest_attributes_tests_with_the_same_function():
    conftest = (Path(__file__).resolve().parents[1] / "conftest.py").read_text(encoding="utf-8")
    assert "from kdatlas.site.records import implementation_module" in conftest
    assert '"implementation": implementation_module(nodeid)' in conftest


def _tests(*nodeids: str) -> list[dict]:
    return [
        {"nodeid": n, "outcome": "passed", "implementation": implementation_module(n)}
        for n in nodeids
    ]


def test_a_record_hashes_the_method_file_and_every_test_file_of_it(tmp_path: Path):
    for path, text in ((KD_FILE, "kd"), (KD_TESTS, "tests"), (CONTRACTS, "contracts")):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    tests = _tests(f"{KD_TESTS}::test_a", f"{KD_TESTS}::test_b", f"{CONTRACTS}::t[{KD}:KDLoss]")
    assert files_of(KD, [t["nodeid"] for t in tests]) == [KD_FILE, KD_TESTS, CONTRACTS]
    assert record_files(tests, read_from(tmp_path)) == {
        KD: {
            KD_FILE: sha256_bytes(b"kd"),
            CONTRACTS: sha256_bytes(b"contracts"),
            KD_TESTS: sha256_bytes(b"tests"),
        }
    }


def _write_record(root: Path, name: str, cuda: bool, files: dict | None) -> None:
    record = {
        "date": "2026-11-01T00:00:00+00:00" if cuda else "2026-11-02T00:00:00+00:00",
        "device": "GPU" if cuda else "CPU",
        "cuda": cuda,
        "commit": "abc",
        "tests": _tests(f"{KD_TESTS}::test_a"),
    }
    if files is not None:
        record["files"] = files
    (root / RECORD_DIR).mkdir(parents=True, exist_ok=True)
    (root / RECORD_DIR / name).write_text(json.dumps(record), encoding="utf-8")


@pytest.fixture
def kb_root(tmp_path: Path) -> Path:
    for path in (KD_FILE, KD_TESTS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(f"# {path}\n", encoding="utf-8")
    return tmp_path


def test_an_outcome_is_current_while_its_files_are_unchanged(kb_root: Path):
    _write_record(
        kb_root, "gpu.json", True, record_files(_tests(f"{KD_TESTS}::t"), read_from(kb_root))
    )
    _write_record(kb_root, "cpu.json", False, None)  # an old record, before hashes
    outcomes = latest_outcomes(read_records(kb_root))
    gpu, cpu = outcomes[(KD, "gpu")], outcomes[(KD, "cpu")]
    assert gpu.is_current(kb_root, KD)
    assert not cpu.is_current(kb_root, KD)  # nothing says what it ran
    (kb_root / KD_TESTS).write_text("# a changed test\n", encoding="utf-8")
    assert not gpu.is_current(kb_root, KD)
    (kb_root / KD_TESTS).write_text(f"# {KD_TESTS}\n", encoding="utf-8")
    assert gpu.is_current(kb_root, KD)
    (kb_root / KD_FILE).unlink()
    assert not gpu.is_current(kb_root, KD)


def test_a_record_that_did_not_hash_the_method_file_is_not_current(kb_root: Path):
    tests_only = {KD: {KD_TESTS: sha256_bytes((kb_root / KD_TESTS).read_bytes())}}
    _write_record(kb_root, "gpu.json", True, tests_only)
    assert not latest_outcomes(read_records(kb_root))[(KD, "gpu")].is_current(kb_root, KD)


def test_the_committed_records_hold_hashes():
    root = Path(__file__).resolve().parents[2]
    records = read_records(root)
    assert records
    for record in records:
        assert set(record["files"]) == {
            t["implementation"] for t in record["tests"] if t["implementation"]
        }
        for files in record["files"].values():
            assert files and all(len(digest) == 64 for digest in files.values())


def test_the_leaf_page_says_changed_since_the_run_instead_of_its_outcome(monkeypatch):
    from kdatlas.site.build import load_knowledge_base
    from kdatlas.site.pages import generate

    from .conftest import FIXTURE_KB, REPO

    monkeypatch.setenv("KDATLAS_SITE_ALLOW_PROBLEMS", "1")
    logit = generate(load_knowledge_base(FIXTURE_KB), REPO).files["sources/logit.md"]
    kd_row = next(line for line in logit.splitlines() if "[`KDLoss`]" in line)
    # the one-line finding, escaped, under the implementation's title
    assert '<span class="kd-finding">Lifted the student &#60;b&#62;from 0&#46;89' in kd_row
    assert "](" not in kd_row.partition("kd-finding")[2].partition("</span>")[0]  # no link syntax
    cpu, gpu = kd_row.split(" | ")[2].split("<br>")  # the Tests cell: the CPU run, the GPU run
    assert cpu.startswith('<span class="kd-status kd-status-changed"')
    assert "changed since the last CPU run (2026-11-02)" in cpu
    assert gpu.startswith('<span class="kd-status kd-status-passed"')
    assert "changed since" not in gpu


def test_leaf_rows_say_how_each_implementation_compares_with_its_authors_code():
    from kdatlas.site.build import load_knowledge_base
    from kdatlas.site.pages import generate

    from .conftest import REPO

    site = generate(load_knowledge_base(REPO), REPO)
    logit = site.files["sources/logit.md"]
    kd_row = next(line for line in logit.splitlines() if "[`KDLoss`]" in line)
    assert 'class="kd-official kd-official-equal"' in kd_row
    assert re.search(r">mdistiller@[0-9a-f]{7}</a>\), max rel\. error", kd_row)
    adversarial = site.files["algorithms/adversarial.md"]
    row = next(line for line in adversarial.splitlines() if "[`ConditionalAdversarialKD`]" in line)
    assert "No released code: compared with the paper&#x27;s equations" in row or (
        "No released code: compared with the paper's equations" in row
    )
