"""The comparison with the authors' code: the loader, the comparison, the runner and the records.

The runner's logic runs on a fake "official" repository (``tests/fixtures/official``); the
committed records (``tests/official_runs``) are checked against the taxonomy. No network.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kdatlas.loader import load
from kdatlas.models import AuthorsCode
from kdatlas.official import (
    RECORD_DIR,
    Adapter,
    OfficialRecord,
    Pair,
    Side,
    compare,
    find_checkout,
    load_symbol,
    no_cuda,
    read_official_records,
    short_float,
    verdict,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "official"
MDISTILLER = "https://github.com/megvii-research/mdistiller"
COMMIT = "0" * 40
KD_FILE = "mdistiller/distillers/KD.py"


@pytest.fixture(scope="module")
def checkout():
    found = find_checkout(FIXTURE, MDISTILLER)
    assert found is not None and found.git_dir is None
    return found


def _kd_adapter(name: str) -> Adapter:
    from reference_impls.sources.logit.kd import KDLoss

    def inputs(generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {
            "s": 3 * torch.randn(16, 10, generator=generator, dtype=torch.float64),
            "t": 3 * torch.randn(16, 10, generator=generator, dtype=torch.float64),
        }

    def build(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
        ours = KDLoss(temperature=4.0)
        theirs = getattr(official, name)
        return Pair(
            ours=Side(lambda x: ours(x["s"], x["t"])),
            theirs=Side(lambda x: theirs(x["s"], x["t"], 4.0)),
        )

    return Adapter(inputs=inputs, student=("s",), build=build, also=(name,))


def test_a_symbol_loads_without_the_unavailable_imports_and_side_effects_of_its_module(
    checkout,
):
    official = load_symbol(checkout, COMMIT, KD_FILE, "kd_loss")
    assert callable(official.kd_loss)
    # the relative import it needs came along; nothing else of the module did
    assert callable(official.soften) and official.REDUCTION == "none"
    for absent in ("package_that_does_not_exist", "Distiller", "trainer", "swapped_kd_loss"):
        assert not hasattr(official, absent)


def test_a_class_loads_with_its_base_from_a_module_whose_imports_fail(checkout):
    official = load_symbol(checkout, COMMIT, KD_FILE, "KD")
    assert official.KD.__mro__[1].__name__ == "Distiller"


def test_a_registry_decorator_from_a_failed_import_is_left_out_and_others_kept(checkout):
    official = load_symbol(checkout, COMMIT, KD_FILE, "registered_kd_loss")
    # the registry's decorator was dropped, staticmethod (which does change it) applied
    assert isinstance(official.registered_kd_loss, staticmethod)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    with no_cuda():
        assert torch.equal(official.registered_kd_loss(s, t, 4.0), official.kd_loss(s, t, 4.0))


def test_a_needed_import_that_fails_raises_only_when_used_and_names_it(checkout):
    official = load_symbol(checkout, COMMIT, KD_FILE, "fused_kd_loss")
    with pytest.raises(RuntimeError, match="fused_kl"):
        official.fused_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), 4.0)


def test_an_unknown_symbol_is_an_error_naming_it(checkout):
    with pytest.raises(NameError, match="no_such_function"):
        load_symbol(checkout, COMMIT, KD_FILE, "no_such_function")


def test_cuda_calls_run_on_the_cpu_and_equal_code_is_reported_equal(checkout):
    official = load_symbol(checkout, COMMIT, KD_FILE, "kd_loss")  # calls .cuda()
    result = compare(_kd_adapter("kd_loss"), official)
    assert result["shapes"] == {"s": [16, 10], "t": [16, 10]}
    assert result["compared"] == ["s"]
    assert result["float64"].max_rel < 1e-12
    assert 0 < result["float32_noise_floor"] < 1e-5
    assert verdict(
        result["float64"].max_rel, result["float32"].max_rel, result["float32_noise_floor"]
    )


def test_a_different_implementation_is_reported_unequal(checkout):
    official = load_symbol(checkout, COMMIT, KD_FILE, "swapped_kd_loss")
    result = compare(_kd_adapter("swapped_kd_loss"), official)
    assert result["float64"].output.max_rel > 1e-3
    assert not verdict(
        result["float64"].max_rel, result["float32"].max_rel, result["float32_noise_floor"]
    )


def test_gradients_of_learnable_parameters_are_compared(checkout):
    official = load_symbol(checkout, COMMIT, KD_FILE, "Hint")

    def build(official: SimpleNamespace, dtype: torch.dtype) -> Pair:
        ours = torch.nn.Linear(6, 4).to(dtype)
        theirs = official.Hint(6, 4).to(dtype)
        theirs.regressor.load_state_dict(ours.state_dict())
        return Pair(
            ours=Side(
                lambda x: (ours(x["s"]) - x["t"]).pow(2).mean() * 1.01,
                dict(ours.named_parameters()),
            ),
            theirs=Side(
                lambda x: theirs(x["s"], x["t"]), dict(theirs.regressor.named_parameters())
            ),
        )

    adapter = Adapter(
        inputs=lambda g: {
            "s": torch.randn(8, 6, generator=g, dtype=torch.float64),
            "t": torch.randn(8, 4, generator=g, dtype=torch.float64),
        },
        student=("s",),
        build=build,
    )
    result = compare(adapter, official)
    assert set(result["float64"].gradients) == {"s", "weight", "bias"}
    # the 1% scale shows in the value and in every gradient
    assert all(0.009 < e.max_rel < 0.011 for e in result["float64"].gradients.values())


def test_statements_of_a_training_loop_run_as_declared(checkout):
    official = load_symbol(checkout, COMMIT, "train.py", "kd_statements", lines="11-13")
    assert "loss_kd" in official.source and "TEMPERATURE" in vars(official)
    s, t = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    scope = official.kd_statements(logits_student=s, logits_teacher=t)
    from reference_impls.sources.logit.kd import kd_loss

    torch.testing.assert_close(scope["loss_kd"], kd_loss(s, t, 4.0))


def test_a_top_level_statement_that_fails_is_a_placeholder_the_caller_can_replace(checkout):
    # ``opt = parse_options()`` exits (as argparse does): loading must not, and the
    # statements that read ``opt`` run with the one the adapter passes
    official = load_symbol(checkout, COMMIT, "train.py", "weighted_statements", lines="28-28")
    with pytest.raises(RuntimeError, match="opt"):
        official.opt.weight  # noqa: B018
    scope = official.weighted_statements(opt=SimpleNamespace(weight=2.0), logits=torch.ones(3))
    assert scope["loss"].item() == 6.0


def _runner():
    spec = importlib.util.spec_from_file_location(
        "verify_official", ROOT / "scripts" / "verify_official.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runner_writes_a_record_and_flags_a_difference(tmp_path, capsys):
    runner = _runner()
    good = runner.main(
        ["--ids", "kd", "--official-dir", str(FIXTURE), "--records-dir", str(tmp_path)],
        adapters={"kd": _kd_adapter("kd_loss")},
    )
    record = OfficialRecord.model_validate_json((tmp_path / "kd.json").read_text())
    assert good == 0 and record.equal and not record.commit_checked
    assert record.id == "kd" and record.symbol == "kd_loss" and record.is_current(ROOT)
    assert record.torch == torch.__version__ and record.float64.gradients["s"].max_rel < 1e-12
    bad = runner.main(
        ["--ids", "kd", "--official-dir", str(FIXTURE), "--records-dir", str(tmp_path)],
        adapters={"kd": _kd_adapter("swapped_kd_loss")},
    )
    assert bad == 1 and "DIFFERENT" in capsys.readouterr().out
    assert not json.loads((tmp_path / "kd.json").read_text())["equal"]


def test_the_runner_says_what_is_missing(tmp_path, capsys):
    runner = _runner()
    status = runner.main(
        ["--ids", "kd", "--official-dir", str(tmp_path), "--records-dir", str(tmp_path)],
        adapters={"kd": _kd_adapter("kd_loss")},
    )
    assert status == 2 and "no copy of https://github.com/megvii-research/mdistiller" in (
        capsys.readouterr().out
    )


def test_a_record_is_stale_once_our_file_changes(tmp_path):
    path = "reference_impls/sources/logit/kd.py"
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text("v1")
    record = _some_record(files={path: __import__("hashlib").sha256(b"v1").hexdigest()})
    assert record.is_current(tmp_path)
    (tmp_path / path).write_text("v2")
    assert not record.is_current(tmp_path)


def _some_record(**changes) -> OfficialRecord:
    run = {"output": {"max_abs": 0.0, "max_rel": 0.0}, "gradients": {}}
    data = {
        "id": "kd",
        "object": "reference_impls.sources.logit.kd:KDLoss",
        "repository": MDISTILLER,
        "commit": COMMIT,
        "commit_checked": True,
        "authors": False,
        "file": KD_FILE,
        "symbol": "kd_loss",
        "configuration": "T 4",
        "shapes": {},
        "compared": [],
        "float64": run,
        "float32": run,
        "float32_noise_floor": 0.0,
        "max_relative_error": 0.0,
        "max_relative_error_float64": 0.0,
        "equal": True,
        "date": "2026-01-01",
        "torch": "2",
        "python": "3",
        "files": {},
    }
    return OfficialRecord.model_validate({**data, **changes})


def test_short_float():
    assert short_float(2.3e-07) == "2e-7" and short_float(0.0) == "0"
    assert short_float(0.012) == "1e-2"


# ------------------------------------------------------------------ the committed records


@pytest.fixture(scope="module")
def declared():
    kb = load(ROOT)
    return {i.id: i for _a, _l, i in kb.implementations()}


def test_every_committed_record_is_valid_and_matches_its_declaration(declared):
    paths = sorted((ROOT / RECORD_DIR).glob("*.json"))
    records = read_official_records(ROOT)
    assert len(records) == len(paths), "a record does not validate (see OfficialRecord)"
    for record_id, record in records.items():
        assert (ROOT / RECORD_DIR / f"{record_id}.json").exists()
        implementation = declared.get(record_id)
        assert implementation is not None, f"{record_id}: no such implementation"
        code = implementation.authors_code
        assert isinstance(code, AuthorsCode), f"{record_id}: authors_code names no repository"
        assert record.object == implementation.object
        for key in ("repository", "commit", "file", "symbol", "lines", "configuration"):
            assert getattr(record, key) == getattr(code, key), f"{record_id}: {key} differs"
        assert record.commit_checked, f"{record_id}: recorded from an unchecked copy"
        assert record.equal or code.known_difference, (
            f"{record_id}: differs from the authors' code (max rel. error "
            f"{record.max_relative_error:.1e}) and no known_difference explains it"
        )


def test_every_declared_repository_has_a_record_and_stale_ones_are_reported(declared):
    records = read_official_records(ROOT)
    missing = [
        i
        for i, impl in declared.items()
        if isinstance(impl.authors_code, AuthorsCode) and i not in records
    ]
    assert not missing, (
        f"no record in {RECORD_DIR}: run scripts/verify_official.py --ids {' '.join(missing)}"
    )
    stale = sorted(i for i, record in records.items() if not record.is_current(ROOT))
    if stale:
        warnings.warn(
            f"changed since verified (rerun scripts/verify_official.py --ids {' '.join(stale)})",
            stacklevel=1,
        )


def test_the_script_declares_an_adapter_for_every_declared_repository(declared):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from official_adapters import ADAPTERS
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    wanted = {i for i, impl in declared.items() if isinstance(impl.authors_code, AuthorsCode)}
    assert wanted <= set(ADAPTERS), sorted(wanted - set(ADAPTERS))
