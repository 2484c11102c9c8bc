"""The set-up every notebook shares: data, a cached teacher, methods compared over seeds.

A leaf's notebook compares the leaf's methods on one small problem. What is not
specific to the leaf is written here once::

    exp = Experiment(seeds=(0, 1, 2), epochs=20, labelled=100, batch_size=25)
    teacher = exp.teacher()  # trained on the full training split, or read from the cache


    def kd(seed):  # one method: build, train on the labelled images, return the student
        return exp.train(OfflineDistiller(student_cnn(), teacher, KDLoss()), seed)


    def alone(seed):
        return exp.train_alone(student_cnn(), seed)


    exp.compare({"alone": alone, "KD": kd}, exp.against(teacher))  # accuracy, agreement, KL
    exp.summary()  # one line per method, mean ± std over the seeds
    exp.plot_curves(teacher)  # test accuracy per epoch; the teacher as a dashed line
    exp.plot_bars(["accuracy", "agreement", ("kl", "KL to the teacher")])

``compare`` runs every method once per seed (re-seeding before each run), measures
the model each run returns on the test set and keeps the results in the format of
:mod:`reference_impls.common.plots`, which draws them.

**The teacher cache.** Training the standard teacher takes a few seconds, and
every notebook needs the same one. :func:`cached_teacher` stores the trained
weights under ``.cache/kdatlas/teachers/`` in the repository (git-ignored; the
environment variable ``KDATLAS_TEACHER_CACHE`` names another folder), keyed by
everything that decides them: the architecture, the data, epochs, learning rate,
batch size, seed, device type, torch version and the source of the model and
training code. A changed configuration gives another key; a file is written
atomically (a temporary file renamed into place) and a file that cannot be read
back, or holds another configuration, is trained again and replaced. Training is
seeded and deterministic on the CPU, so a cached teacher equals a retrained one,
and the students trained after it see the same random numbers either way (each
run is re-seeded).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reference_impls.common import data as data_module
from reference_impls.common import training as training_module
from reference_impls.common.data import DataSplit, load_digits_split
from reference_impls.common.losses import kl_divergence, softened_log_probs
from reference_impls.common.models import teacher_cnn
from reference_impls.common.plots import (
    Results,
    plot_learning_curves,
    plot_metric_bars,
    print_summary,
)
from reference_impls.common.training import (
    Supervised,
    default_device,
    freeze,
    predict_logits,
    set_seed,
    train,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CACHE_ENVIRONMENT_VARIABLE = "KDATLAS_TEACHER_CACHE"
CACHE_FORMAT = 1  # bump when the layout of a cache file changes

Measure = Callable[[nn.Module], Mapping[str, float]]
"""What is measured on the model a run returns: metric name → value."""


# ----------------------------------------------------------------------------- teacher cache


def default_cache_dir() -> Path:
    """``$KDATLAS_TEACHER_CACHE``, else ``.cache/kdatlas/teachers`` in the repository.

    Outside a checkout (an installed package) the user's cache folder is used.
    """
    if configured := os.environ.get(CACHE_ENVIRONMENT_VARIABLE):
        return Path(configured).expanduser()
    repository = Path(__file__).resolve().parents[2]
    if (repository / "pyproject.toml").is_file():
        return repository / ".cache" / "kdatlas" / "teachers"
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return user_cache / "kdatlas" / "teachers"


def _sha256_of_files(paths: Sequence[str | Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _sha256_of_data(data: DataSplit) -> str:
    digest = hashlib.sha256(str(data.num_classes).encode())
    for tensor in (data.x_train, data.y_train, data.x_test, data.y_test):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def teacher_config(
    model: nn.Module,
    data: DataSplit,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Everything that decides a trained teacher's weights, as a JSON-able dict.

    The architecture is the model's class and ``repr`` (every layer's shape); the
    data enter by a hash of their tensors (so the data seed and split count); the
    code by a hash of the model's module and of the data and training modules.
    """
    model_type = type(model)
    code_files = [sys.modules[model_type.__module__].__file__, data_module.__file__]
    code_files.append(training_module.__file__)
    return {
        "format": CACHE_FORMAT,
        "architecture": f"{model_type.__module__}.{model_type.__qualname__}: {model!r}",
        "data": _sha256_of_data(data),
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "device": device.type,
        "torch": str(torch.__version__),
        "code": _sha256_of_files(code_files),
    }


def config_key(config: Mapping[str, Any]) -> str:
    """The SHA-256 of the configuration (its JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _load(path: Path, model: nn.Module, config: Mapping[str, Any]) -> list[float] | None:
    """The cached test-accuracy curve after loading the weights into ``model``; None on a miss.

    A file that is unreadable, truncated or made for another configuration is a
    miss (with a note): the caller trains again and overwrites it.
    """
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload["config"] != dict(config):
            raise ValueError("it was written for another configuration")
        curve = [float(value) for value in payload["test_accuracy"]]
        model.load_state_dict(payload["state_dict"])  # strict: every tensor, right shapes
    except Exception as error:  # whatever the damage, the remedy is to train again
        reason = (str(error).splitlines() or [""])[0][:200]
        print(f"teacher cache {path} unusable ({type(error).__name__}: {reason}); training again")
        return None
    return curve


def _save_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(dict(payload), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@dataclass
class CachedTeacher:
    """A trained, frozen teacher, its test accuracy after each epoch, and where it came from."""

    model: nn.Module
    test_accuracy: list[float]
    from_cache: bool
    path: Path | None

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1]


def cached_teacher(
    make_model: Callable[[], nn.Module],
    data: DataSplit,
    *,
    epochs: int = 5,
    lr: float = 0.1,
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = False,
) -> CachedTeacher:
    """Cross-entropy training of ``make_model()`` on ``data``, read from the cache when it can be.

    ``cache_dir`` defaults to :func:`default_cache_dir`; a folder that cannot be
    written only costs the cache (the teacher is trained and returned all the same).
    The model is built under ``set_seed(seed)`` either way, and returned frozen.
    """
    device = torch.device(device) if device is not None else default_device()
    set_seed(seed)
    model = make_model()
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    config = teacher_config(model, data, device=device, **settings)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{type(model).__name__}-{config_key(config)[:20]}.pt"
    curve = _load(path, model, config)
    from_cache = curve is not None
    if curve is None:
        set_seed(seed)
        model = make_model()  # a fresh one: a failed load may have written into the first
        history = train(Supervised(model), data, device=device, progress=progress, **settings)
        curve = history.test_accuracy
        payload = {"config": config, "state_dict": model.state_dict(), "test_accuracy": curve}
        try:
            _save_atomically(path, payload)
        except OSError as error:
            print(f"teacher not cached ({error}); it is trained again next time")
            path = None
    return CachedTeacher(freeze(model.to(device)), curve, from_cache, path)


def cached_model(
    make_model: Callable[[], nn.Module],
    fit: Callable[[nn.Module], Mapping[str, Any]],
    *,
    settings: Mapping[str, Any],
    code_files: Sequence[str | Path] = (),
    seed: int = 0,
    device: torch.device | str | None = None,
    cache_dir: Path | str | None = None,
) -> tuple[nn.Module, dict[str, Any], bool]:
    """Any trained model, read from the teacher cache when it can be: ``(model, record, from_cache)``.

    For teachers that are not a classifier trained by :func:`cached_teacher` (a
    sequence model, a denoiser, a generator): ``fit(model)`` trains ``model`` in
    place and returns a JSON-able record (a loss curve, a test score) that is
    stored beside the weights and handed back on a hit. The key holds ``settings``
    (everything ``fit`` reads that is not code: data seed, steps, learning rate...),
    the model's class and ``repr``, ``seed``, the device type, the torch version and
    the source of the model's module and of ``code_files`` (the data and training
    code ``fit`` runs). The model is built and fitted under ``set_seed(seed)`` and
    returned frozen, on ``device``.
    """
    device = torch.device(device) if device is not None else default_device()
    set_seed(seed)
    model = make_model()
    model_type = type(model)
    files = [sys.modules[model_type.__module__].__file__, *map(str, code_files)]
    config = {
        "format": CACHE_FORMAT,
        "architecture": f"{model_type.__module__}.{model_type.__qualname__}: {model!r}",
        "settings": json.loads(json.dumps(dict(settings), sort_keys=True, default=str)),
        "seed": seed,
        "device": device.type,
        "torch": str(torch.__version__),
        "code": _sha256_of_files(files),
    }
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{model_type.__name__}-{config_key(config)[:20]}.pt"
    record = _load_record(path, model, config)
    if record is not None:
        return freeze(model.to(device)), record, True
    set_seed(seed)
    model = make_model().to(device)  # a fresh one: a failed load may have written into the first
    record = json.loads(json.dumps(dict(fit(model)), default=float))
    payload = {"config": config, "state_dict": model.state_dict(), "record": json.dumps(record)}
    try:
        _save_atomically(path, payload)
    except OSError as error:
        print(f"model not cached ({error}); it is trained again next time")
    return freeze(model), record, False


def _load_record(path: Path, model: nn.Module, config: Mapping[str, Any]) -> dict | None:
    """:func:`_load` for :func:`cached_model`: the stored record, or None on a miss."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload["config"] != dict(config):
            raise ValueError("it was written for another configuration")
        record = json.loads(payload["record"])
        model.load_state_dict(payload["state_dict"])
    except Exception as error:  # whatever the damage, the remedy is to train again
        reason = (str(error).splitlines() or [""])[0][:200]
        print(f"model cache {path} unusable ({type(error).__name__}: {reason}); training again")
        return None
    return record


# ----------------------------------------------------------------------------- experiments


@dataclass
class Trained:
    """What one run of a method hands back to :meth:`Experiment.compare`.

    ``model`` is the network that would be deployed: it is measured on the test
    set. ``curve`` holds one value per epoch for the learning curves (test accuracy
    unless the run chose otherwise). ``extras`` are further values the run measured
    itself (an ensemble's accuracy, an assistant's), stored in its results row.
    """

    model: nn.Module
    curve: list[float]
    extras: dict[str, Any] = field(default_factory=dict)


Method = Callable[[int], "Trained | Mapping[str, Trained]"]
"""One method: ``seed → Trained``, or several named ``Trained`` from one run."""


def _quiet_tqdm():
    """tqdm's auto bar, imported once without its warning (in a notebook without
    ipywidgets it falls back to a text bar, which is fine here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm
    return tqdm


class Experiment:
    """Data, teacher, training schedule and results of one notebook's comparison.

    Args:
        seeds: every method runs once per seed; results are mean ± std over them.
        epochs: epochs of every student run (:meth:`train`).
        labelled: training images the students see (the first ``labelled`` of the
            split); ``None`` for all of them. The teacher always sees all.
        batch_size: the students' batch size.
        lr: the students' initial learning rate (cosine schedule to zero).
        data: the split (default: scikit-learn's digits, ``load_digits_split(seed=0)``).
        device: default: CUDA when present, else the CPU.
        threads: torch's CPU threads; one is as fast for these tiny models and
            never fights other jobs for cores. ``None`` leaves torch's setting.
        cache_dir: where trained teachers are kept (default: :func:`default_cache_dir`).
        examples: what one example of ``data`` is called in printed lines and titles
            (``"nodes"`` for a graph's node features).
    """

    def __init__(
        self,
        *,
        seeds: Sequence[int] = (0, 1, 2),
        epochs: int = 20,
        labelled: int | None = 100,
        batch_size: int = 25,
        lr: float = 0.05,
        data: DataSplit | None = None,
        device: torch.device | str | None = None,
        threads: int | None = 1,
        cache_dir: Path | str | None = None,
        examples: str = "images",
    ) -> None:
        self.started = time.perf_counter()
        if threads is not None:
            torch.set_num_threads(threads)
        self.seeds = tuple(seeds)
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.device = torch.device(device) if device is not None else default_device()
        self.data = (data if data is not None else load_digits_split(seed=0)).to(self.device)
        self.labelled = self.data if labelled is None else self.data.with_train_subset(labelled)
        self.cache_dir = cache_dir
        self.data_name = "digits" if data is None else examples
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.titles = {  # how tables and charts name a metric key
            "accuracy": "test accuracy",
            "agreement": "agreement with teacher",
            "kl": "KL(teacher ‖ student), τ = 4",
        }
        self.models: dict[str, nn.Module] = {}  # each method's model from the first seed
        self._test_logits: weakref.WeakKeyDictionary[nn.Module, torch.Tensor] = (
            weakref.WeakKeyDictionary()
        )
        _quiet_tqdm()  # before any progress bar (the teacher's) imports it with a warning
        print(
            f"device: {self.device}; students train on {len(self.labelled.x_train):,} labelled "
            f"{examples}, every model is tested on {len(self.data.x_test):,} held-out {examples}"
        )

    # ------------------------------------------------------------------ training

    def teacher(
        self,
        make_model: Callable[[], nn.Module] = teacher_cnn,
        *,
        epochs: int = 5,
        lr: float = 0.1,
        batch_size: int = 128,
        seed: int = 0,
    ) -> nn.Module:
        """A teacher trained with cross-entropy on the whole training split, frozen.

        Read from the teacher cache when an identical one was trained before.
        """
        teacher = cached_teacher(
            make_model,
            self.data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            device=self.device,
            cache_dir=self.cache_dir,
            progress=True,
        )
        source = "read from the cache" if teacher.from_cache else "trained now, then cached"
        schedule = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        print(
            f"teacher ({schedule} on {len(self.data.x_train):,} images, {source}): "
            f"test accuracy {teacher.final_accuracy:.3f}"
        )
        return teacher.model

    def train(
        self,
        procedure: nn.Module,
        seed: int,
        *,
        evaluate: nn.Module | None = None,
        curve: Callable[[nn.Module], float] | None = None,
        epochs: int | None = None,
    ) -> Trained:
        """Train ``procedure`` on the labelled images with the experiment's schedule.

        ``evaluate`` is the model returned and measured (default, as in
        :func:`~reference_impls.common.training.train`: the procedure's ``student``,
        else its ``model``). ``curve`` is recorded on it after each epoch (default:
        test accuracy). ``epochs`` overrides the schedule's length (e.g. for an
        initialisation phase).
        """
        model = evaluate if evaluate is not None else getattr(procedure, "student", None)
        model = model if model is not None else procedure.model
        per_epoch: list[float] = []

        def record(epoch: int, losses: Mapping[str, float]) -> None:
            per_epoch.append(curve(model))

        history = train(
            procedure,
            self.labelled,
            epochs=self.epochs if epochs is None else epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=seed,
            device=self.device,
            evaluate=model,
            progress=record if curve is not None else False,
        )
        return Trained(model, per_epoch if curve is not None else history.test_accuracy)

    def train_alone(self, model: nn.Module, seed: int) -> Trained:
        """Cross-entropy training of ``model`` alone, the usual baseline."""
        return self.train(Supervised(model), seed)

    def compare(self, methods: Mapping[str, Method], measure: Measure | None = None) -> Results:
        """Run every method once per seed; return (and keep) the results per method.

        Each run is seeded with its seed first. ``measure`` maps the run's model to
        its metrics (default: test accuracy); a row also holds the run's ``curve``
        and ``extras``. A method may return several named results from one run (for
        Born-Again Networks, generation 0 is the baseline); they appear in the order
        they are returned.
        """
        measure = measure or (lambda model: {"accuracy": self.accuracy(model)})
        runs = [(name, seed) for name in methods for seed in self.seeds]
        for name, seed in _quiet_tqdm()(runs, desc="methods x seeds"):
            set_seed(seed)
            outcome = methods[name](seed)
            named = {name: outcome} if isinstance(outcome, Trained) else outcome
            for result_name, trained in named.items():
                row = {"curve": trained.curve, **measure(trained.model), **trained.extras}
                self.results.setdefault(result_name, []).append(row)
                self.models.setdefault(result_name, trained.model)
        return self.results

    # ------------------------------------------------------------------ metrics

    def _logits(self, model: nn.Module) -> torch.Tensor:
        """Test-set logits; a frozen model's (a teacher's) are computed once."""
        if model in self._test_logits:
            return self._test_logits[model]
        logits = predict_logits(model, self.data.x_test)
        if not any(parameter.requires_grad for parameter in model.parameters()):
            self._test_logits[model] = logits
        return logits

    def accuracy(self, model: nn.Module) -> float:
        """Top-1 accuracy on the test images."""
        return (self._logits(model).argmax(1) == self.data.y_test).float().mean().item()

    def agreement(self, model: nn.Module, teacher: nn.Module) -> float:
        """Fraction of test images where ``model`` predicts the teacher's class."""
        same = self._logits(model).argmax(1) == self._logits(teacher).argmax(1)
        return same.float().mean().item()

    def kl_to_teacher(
        self, model: nn.Module, teacher: nn.Module, temperature: float = 4.0
    ) -> float:
        """Mean KL(teacher ‖ model) of the predictions softened at ``temperature``, test set.

        No $\\tau^2$ factor: a distance to report, not a loss to train with.
        """
        log_p_model = softened_log_probs(self._logits(model), temperature)
        log_p_teacher = softened_log_probs(self._logits(teacher), temperature)
        return kl_divergence(log_p_model, log_p_teacher).item()

    def against(self, teacher: nn.Module, temperature: float = 4.0) -> Measure:
        """The usual measure: test accuracy, agreement with and KL to ``teacher``."""
        self.titles["kl"] = f"KL(teacher ‖ student), τ = {temperature:g}"

        def measure(model: nn.Module) -> dict[str, float]:
            return {
                "accuracy": self.accuracy(model),
                "agreement": self.agreement(model, teacher),
                "kl": self.kl_to_teacher(model, teacher, temperature),
            }

        return measure

    # ------------------------------------------------------------------ reporting

    def _titled(self, metrics: Sequence[str | tuple[str, str]]) -> list[tuple[str, str]]:
        """``(key, title)`` pairs; a key alone takes its title from :attr:`titles`."""
        return [(m, self.titles.get(m, m)) if isinstance(m, str) else m for m in metrics]

    def summary(self, columns: Sequence[str | tuple[str, str]] = ("accuracy",)) -> None:
        """One line per method: each column (a metric key, or ``(key, label)``) as mean ± std."""
        print_summary(self.results, self._titled(columns))

    def plot_curves(self, teacher: nn.Module | None = None, **options: Any) -> Figure:
        """:func:`~reference_impls.common.plots.plot_learning_curves` of the results.

        ``teacher`` adds its test accuracy as a dashed line. Defaults: a title saying
        how many labelled images the students saw; bands of ± one std only from three
        seeds on (the std of two says little); two legend columns past six methods.
        """
        labelled = f"{len(self.labelled.x_train)} labelled {self.data_name}"
        options.setdefault("title", f"Students trained on {labelled}")
        options.setdefault("bands", len(self.seeds) >= 3)
        options.setdefault("legend_columns", 2 if len(self.results) > 6 else 1)
        if teacher is not None:
            options.setdefault("teacher_accuracy", self.accuracy(teacher))
        return plot_learning_curves(self.results, **options)

    def plot_bars(self, metrics: Sequence[str | tuple[str, str]], **options: Any) -> Figure:
        """:func:`~reference_impls.common.plots.plot_metric_bars`: one panel per metric.

        A metric is a key of the results (titled from :attr:`titles`) or ``(key, title)``.
        """
        return plot_metric_bars(self.results, self._titled(metrics), **options)

    def report_runtime(self) -> None:
        """Print the wall time since the experiment began and the process's CPU time."""
        print(
            f"notebook ran in {time.perf_counter() - self.started:.0f} s on {self.device} "
            f"({time.process_time():.0f} s of CPU time in this kernel)"
        )
