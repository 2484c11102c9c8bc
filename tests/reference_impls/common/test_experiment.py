"""The notebooks' shared set-up: the teacher cache and ``Experiment`` (tiny MLPs on blobs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from reference_impls.common import (
    Experiment,
    Supervised,
    TinyMLP,
    Trained,
    agreement,
    cached_teacher,
    kl_to_teacher,
    make_blobs_split,
    set_seed,
    train_supervised,
)
from reference_impls.common import experiment as experiment_module
from reference_impls.common.experiment import (
    cached_model,
    config_key,
    default_cache_dir,
    teacher_config,
)
from reference_impls.schemes.offline.distiller import OfflineDistiller
from reference_impls.sources.logit.kd import KDLoss

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = {"epochs": 2, "lr": 0.1, "batch_size": 32, "seed": 0}


def small_teacher() -> TinyMLP:
    return TinyMLP(16, (32,), 3)


def small_student() -> TinyMLP:
    return TinyMLP(16, (8,), 3)


@pytest.fixture
def data():
    return make_blobs_split(n_samples=240, n_features=16, num_classes=3, seed=0)


def teach(data, cache_dir, **overrides):
    return cached_teacher(small_teacher, data, cache_dir=cache_dir, **{**SETTINGS, **overrides})


def trained_without_cache(data) -> TinyMLP:
    """What the notebooks did before the cache: seed, build, train."""
    set_seed(SETTINGS["seed"])
    model = small_teacher()
    train_supervised(model, data, **SETTINGS)
    return model


def assert_same_weights(first: torch.nn.Module, second: torch.nn.Module) -> None:
    first_state, second_state = first.state_dict(), second.state_dict()
    assert first_state.keys() == second_state.keys()
    for name, tensor in first_state.items():
        assert torch.equal(tensor, second_state[name]), name


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


# ----------------------------------------------------------------------------- the cache


def test_a_cache_hit_gives_the_weights_and_curve_that_training_gave(data, tmp_path):
    trained = teach(data, tmp_path)
    assert not trained.from_cache
    assert trained.path is not None and trained.path.is_file()
    hit = teach(data, tmp_path)
    assert hit.from_cache and hit.path == trained.path
    assert_same_weights(hit.model, trained.model)
    assert_same_weights(hit.model, trained_without_cache(data))
    assert hit.test_accuracy == trained.test_accuracy
    assert len(hit.test_accuracy) == SETTINGS["epochs"]


def test_the_teacher_comes_back_frozen_in_eval_mode(data, tmp_path):
    for teacher in (teach(data, tmp_path).model, teach(data, tmp_path).model):  # miss, then hit
        assert not teacher.training
        assert not any(parameter.requires_grad for parameter in teacher.parameters())


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 3},
        {"lr": 0.05},
        {"batch_size": 16},
        {"seed": 1},
        {"data seed": 1},
        {"architecture": (64,)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_the_key_changes_with_the_configuration(data, change):
    def config(settings, split=data, hidden=(32,)):
        model = TinyMLP(16, hidden, 3)
        return teacher_config(model, split, device=torch.device("cpu"), **settings)

    base = config(SETTINGS)
    name, value = next(iter(change.items()))
    if name == "data seed":
        split = make_blobs_split(n_samples=240, n_features=16, num_classes=3, seed=value)
        changed = config(SETTINGS, split=split)
    elif name == "architecture":
        changed = config(SETTINGS, hidden=value)
    else:
        changed = config({**SETTINGS, name: value})
    assert config_key(changed) != config_key(base)
    assert config_key(config(SETTINGS)) == config_key(base)  # and only with it


def test_the_key_names_device_torch_version_and_code(data):
    config = teacher_config(small_teacher(), data, device=torch.device("cpu"), **SETTINGS)
    assert config["device"] == "cpu"
    assert config["torch"] == str(torch.__version__)
    assert len(config["code"]) == 64 and len(config["data"]) == 64
    cuda = teacher_config(small_teacher(), data, device=torch.device("cuda"), **SETTINGS)
    assert config_key(cuda) != config_key(config)


def test_another_configuration_is_another_file(data, tmp_path):
    first = teach(data, tmp_path)
    other = teach(data, tmp_path, epochs=3)
    assert not other.from_cache
    assert other.path != first.path
    assert len(cache_files(tmp_path)) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"not a torch file"),
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        lambda path: path.write_bytes(b""),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_a_corrupt_cache_file_is_trained_again_and_replaced(data, tmp_path, capsys, damage):
    path = teach(data, tmp_path).path
    damage(path)
    recovered = teach(data, tmp_path)
    assert not recovered.from_cache
    assert "unusable" in capsys.readouterr().out
    assert_same_weights(recovered.model, trained_without_cache(data))
    assert teach(data, tmp_path).from_cache  # the file was rewritten whole


def test_a_file_with_the_wrong_tensors_does_not_leave_a_half_loaded_teacher(data, tmp_path):
    path = teach(data, tmp_path).path
    payload = torch.load(path, weights_only=True)
    state = payload["state_dict"]
    first_name = next(iter(state))
    state[first_name] = torch.full_like(state[first_name], 7.0)  # would load
    state["layers.0.bias"] = torch.zeros(5)  # wrong shape: the load fails after the first
    torch.save(payload, path)
    recovered = teach(data, tmp_path)
    assert not recovered.from_cache
    assert_same_weights(recovered.model, trained_without_cache(data))


def test_a_file_written_for_another_configuration_is_a_miss(data, tmp_path):
    path = teach(data, tmp_path).path
    payload = torch.load(path, weights_only=True)
    payload["config"] = {**payload["config"], "epochs": 99}
    torch.save(payload, path)
    assert not teach(data, tmp_path).from_cache


def test_writing_is_atomic_a_failed_write_keeps_the_old_file_and_no_temporary(
    data, tmp_path, monkeypatch
):
    path = teach(data, tmp_path).path
    before = path.read_bytes()
    path.write_bytes(b"corrupt")  # forces a retrain and a write

    def failing_save(obj, handle, *args, **kwargs):
        handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(experiment_module.torch, "save", failing_save)
    teacher = teach(data, tmp_path)  # still a teacher: the cache is only an optimisation
    assert teacher.path is None
    assert path.read_bytes() == b"corrupt"  # never the half-written file
    assert cache_files(tmp_path) == [path]  # no temporary file left behind
    monkeypatch.undo()
    assert teach(data, tmp_path).path.read_bytes() == before


def test_an_unwritable_cache_folder_costs_only_the_cache(data, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    teacher = teach(data, blocker / "teachers")  # cannot be created: a file is in the way
    assert not teacher.from_cache and teacher.path is None
    assert_same_weights(teacher.model, trained_without_cache(data))


def test_the_default_folder_is_git_ignored_and_the_environment_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv(experiment_module.CACHE_ENVIRONMENT_VARIABLE, raising=False)
    folder = default_cache_dir()
    assert folder == ROOT / ".cache" / "kdatlas" / "teachers"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(folder / "TinyCNN-0123.pt")], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "teacher cache files must never be committed"
    monkeypatch.setenv(experiment_module.CACHE_ENVIRONMENT_VARIABLE, str(tmp_path))
    assert default_cache_dir() == tmp_path


# ----------------------------------------------------------------------------- Experiment


def experiment(data, tmp_path, seeds=(0, 1)) -> Experiment:
    return Experiment(
        seeds=seeds,
        epochs=2,
        labelled=60,
        batch_size=20,
        data=data,
        cache_dir=tmp_path,
        threads=None,
    )


def test_students_train_on_the_labelled_subset_and_the_teacher_on_everything(data, tmp_path):
    exp = experiment(data, tmp_path)
    assert len(exp.labelled.x_train) == 60
    assert torch.equal(exp.labelled.x_test, data.x_test)
    teacher = exp.teacher(small_teacher, **SETTINGS)
    assert_same_weights(teacher, trained_without_cache(data))


def test_compare_runs_every_method_per_seed_and_keeps_the_first_seeds_model(data, tmp_path):
    exp = experiment(data, tmp_path, seeds=(3, 4, 5))
    seen: list[tuple[str, int]] = []

    def method(name):
        def run(seed):
            seen.append((name, seed))
            return exp.train_alone(small_student(), seed)

        return run

    results = exp.compare({"alone": method("alone"), "again": method("again")})
    assert seen == [
        ("alone", 3),
        ("alone", 4),
        ("alone", 5),
        ("again", 3),
        ("again", 4),
        ("again", 5),
    ]
    assert list(results) == ["alone", "again"]
    assert [len(rows) for rows in results.values()] == [3, 3]
    row = results["alone"][0]
    assert set(row) == {"curve", "accuracy"} and len(row["curve"]) == exp.epochs
    assert row["accuracy"] == pytest.approx(row["curve"][-1])  # the curve ends at the final model
    assert row["accuracy"] == exp.accuracy(exp.models["alone"])
    # each run is seeded: the same method gives the same numbers
    assert results["again"] == results["alone"]


def test_a_run_may_return_several_named_results_with_extras(data, tmp_path):
    exp = experiment(data, tmp_path)

    def two_from_one(seed):
        first = exp.train_alone(small_student(), seed)
        second = exp.train_alone(small_student(), seed + 10)
        return {"first": first, "second": Trained(second.model, second.curve, {"note": seed})}

    exp.compare({"pair": two_from_one})
    assert list(exp.results) == ["first", "second"]
    assert [row["note"] for row in exp.results["second"]] == [0, 1]
    assert "note" not in exp.results["first"][0]


def test_train_records_the_curve_it_is_asked_for(data, tmp_path):
    exp = experiment(data, tmp_path)
    calls = []

    def curve(model):
        calls.append(model)
        return float(len(calls))

    student = small_student()
    trained = exp.train(Supervised(student), 0, curve=curve, epochs=3)
    assert trained.model is student
    assert trained.curve == [1.0, 2.0, 3.0]  # one value per epoch, from the callable
    assert all(model is student for model in calls)
    assert len(exp.train(Supervised(small_student()), 0).curve) == exp.epochs  # test accuracy


def test_teacher_metrics_match_the_training_module_and_cache_only_frozen_models(data, tmp_path):
    exp = experiment(data, tmp_path)
    teacher = exp.teacher(small_teacher, **SETTINGS)
    student = exp.train_alone(small_student(), 0).model
    x_test = exp.data.x_test
    measured = exp.against(teacher, temperature=4.0)(student)
    assert measured["agreement"] == pytest.approx(agreement(student, teacher, x_test))
    assert measured["kl"] == pytest.approx(kl_to_teacher(student, teacher, x_test, 4.0))
    assert teacher in exp._test_logits  # frozen: its logits are computed once
    assert student not in exp._test_logits  # still trainable: never cached


def test_results_do_not_depend_on_whether_the_teacher_came_from_the_cache(data, tmp_path, capsys):
    def distil(exp):
        teacher = exp.teacher(small_teacher, **SETTINGS)

        def run(seed):
            distiller = OfflineDistiller(small_student(), teacher, KDLoss(4.0), 0.1, 0.9)
            return exp.train(distiller, seed)

        return exp.compare({"KD": run}, exp.against(teacher))

    cold = distil(experiment(data, tmp_path))
    assert "trained now" in capsys.readouterr().out
    warm = distil(experiment(data, tmp_path))
    assert "read from the cache" in capsys.readouterr().out
    assert warm == cold


@pytest.mark.parametrize(("seeds", "bands"), [((0, 1), 0), ((0, 1, 2), 1)])
def test_plots_name_metrics_draw_the_teacher_and_bands_only_from_three_seeds(
    data, tmp_path, capsys, seeds, bands
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    exp = experiment(data, tmp_path, seeds=seeds)
    teacher = exp.teacher(small_teacher, **SETTINGS)
    exp.compare(
        {"alone": lambda seed: exp.train_alone(small_student(), seed)}, exp.against(teacher)
    )
    try:
        (ax,) = exp.plot_curves(teacher).axes
        assert [line.get_label() for line in ax.get_lines()] == ["alone", "teacher"]
        assert ax.get_lines()[1].get_ydata()[0] == pytest.approx(exp.accuracy(teacher))
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == bands
        assert ax.get_title() == "Students trained on 60 labelled images"
        figure = exp.plot_bars(["accuracy", "kl", ("agreement", "agrees")])
        titles = [axis.get_title() for axis in figure.axes]
        assert titles == ["test accuracy", "KL(teacher ‖ student), τ = 4", "agrees"]
    finally:
        plt.close("all")
    capsys.readouterr()
    exp.summary(["accuracy", ("agreement", "agrees")])
    assert capsys.readouterr().out.startswith("alone: test accuracy ")


# ----------------------------------------------------------------------------- cached_model


def _regressor() -> torch.nn.Module:
    return torch.nn.Linear(3, 1)


def _fit_counting(calls: list[int]):
    def fit(model: torch.nn.Module) -> dict:
        calls.append(1)
        x = torch.randn(64, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(20):
            loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return {"loss": losses}

    return fit


def test_cached_model_trains_once_and_a_hit_gives_the_same_weights_and_record(tmp_path):
    calls: list[int] = []
    settings = {"steps": 20, "lr": 0.1}
    first, record, hit = cached_model(
        _regressor, _fit_counting(calls), settings=settings, cache_dir=tmp_path, device="cpu"
    )
    second, record2, hit2 = cached_model(
        _regressor, _fit_counting(calls), settings=settings, cache_dir=tmp_path, device="cpu"
    )
    assert (hit, hit2, len(calls)) == (False, True, 1)
    assert record == record2 and record["loss"][-1] < record["loss"][0]
    assert torch.equal(first.weight, second.weight)
    assert not second.training and not any(p.requires_grad for p in second.parameters())


def test_cached_model_other_settings_or_a_corrupt_file_train_again(tmp_path, capsys):
    calls: list[int] = []
    cached_model(_regressor, _fit_counting(calls), settings={"a": 1}, cache_dir=tmp_path)
    cached_model(_regressor, _fit_counting(calls), settings={"a": 2}, cache_dir=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.pt"))) == 2
    for path in tmp_path.glob("*.pt"):
        path.write_bytes(b"truncated")
    _, _, hit = cached_model(
        _regressor, _fit_counting(calls), settings={"a": 1}, cache_dir=tmp_path
    )
    assert not hit and len(calls) == 3 and "unusable" in capsys.readouterr().out
