"""Comparisons with the authors' code: load their definitions, run both, record the errors.

An implementation's ``authors_code`` (``taxonomy/<area>.yaml``) names a repository, a
commit, a file and a symbol. ``scripts/verify_official.py`` finds a local copy of that
repository, loads the symbol with :func:`load_symbol` — only its definition and the
definitions, constants and imports it needs, never the rest of the module (their modules
import training pipelines, CUDA-only code and old libraries), imports and top-level
statements that fail (a script's ``opt = parser.parse_args()``) bound to a placeholder
that raises only if used, decorators that fail (a registry's) left out — runs it and ours through :func:`compare` under
:func:`no_cuda` (``.cuda()`` is the identity), in float64 and float32, and writes
``tests/official_runs/<id>.json`` (:class:`OfficialRecord`).

A record is current while our method file still has the SHA-256 it recorded
(:meth:`OfficialRecord.is_current`), like the GPU records of
:mod:`kdatlas.site.records`. This module imports torch only inside the functions that
run code, so the site and ``kdatlas check --no-imports`` can read records without it.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import importlib
import io
import json
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kdatlas.site.records import method_file, read_from, sha256_bytes

RECORD_DIR = Path("tests") / "official_runs"
FLOAT64_TOLERANCE = 1e-10  # the same computation in another order differs by ~1e-15
FLOAT32_FLOOR_FACTOR = 10.0  # float32 may differ by this many times our own float32 noise
FLOAT32_MIN_TOLERANCE = 1e-6  # ... and never needs to be closer than this

# ---------------------------------------------------------------------------- the record


class Errors(BaseModel):
    """Largest absolute difference and the relative error ``max|ours - theirs| / max|theirs|``
    (the absolute difference where theirs is all zeros) of one tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_abs: float
    max_rel: float


class PrecisionRun(BaseModel):
    """One precision's comparison: the output and the gradient w.r.t. each compared tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output: Errors
    gradients: dict[str, Errors]

    @property
    def max_rel(self) -> float:
        return max([self.output.max_rel, *(e.max_rel for e in self.gradients.values())])


class OfficialRecord(BaseModel):
    """``tests/official_runs/<id>.json``: one implementation against its authors' code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    object: str
    repository: str
    commit: str
    commit_checked: bool = Field(
        description="True when the file was read from a git checkout at that commit; False "
        "when from a plain directory assumed to be it (the runner's own tests)."
    )
    authors: bool
    file: str
    symbol: str
    lines: str | None = None
    configuration: str
    differs_at_defaults: str | None = None
    known_difference: str | None = None
    shapes: dict[str, list[int]]
    compared: list[str] = Field(description="Student inputs and parameters whose gradients.")
    float64: PrecisionRun
    float32: PrecisionRun
    float32_noise_floor: float = Field(
        description="Max relative error of our own float32 run against our float64 run."
    )
    max_relative_error: float = Field(description="Over output and gradients, float32.")
    max_relative_error_float64: float
    equal: bool
    date: str
    torch: str
    python: str
    files: dict[str, str] = Field(description="SHA-256 of our method file when compared.")

    def is_current(self, root: Path) -> bool:
        """Whether our method file still has the hash it had when compared."""
        path = method_file(self.object.partition(":")[0])
        if path not in self.files:
            return False
        data = read_from(root)(path)
        return data is not None and sha256_bytes(data) == self.files[path]

    @property
    def where(self) -> str:
        """``owner/name@commit10, file:symbol`` (or ``file:L1-L2``)."""
        repo = self.repository.removeprefix("https://github.com/")
        what = f"L{self.lines.replace('-', '-L')}" if self.lines else self.symbol
        return f"{repo}@{self.commit[:10]}, {self.file}:{what}"


def record_path(root: Path, implementation_id: str) -> Path:
    return root / RECORD_DIR / f"{implementation_id}.json"


def read_official_records(root: Path) -> dict[str, OfficialRecord]:
    """``{implementation id: record}`` of every readable, valid record."""
    records: dict[str, OfficialRecord] = {}
    for path in sorted((root / RECORD_DIR).glob("*.json")):
        try:
            record = OfficialRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        records[record.id] = record
    return records


def verdict(float64_max_rel: float, float32_max_rel: float, noise_floor: float) -> bool:
    """Equal: float64 agrees to rounding, float32 within a few times our own float32 noise."""
    tolerance32 = max(FLOAT32_MIN_TOLERANCE, FLOAT32_FLOOR_FACTOR * noise_floor)
    return float64_max_rel <= FLOAT64_TOLERANCE and float32_max_rel <= tolerance32


# ---------------------------------------------------------------------- their repository


@dataclass(frozen=True)
class Checkout:
    """A local copy of a repository: a git directory read at a commit, or plain files."""

    path: Path
    git_dir: Path | None

    def read(self, commit: str, file: str) -> str | None:
        if self.git_dir is None:
            target = self.path / file
            return target.read_text(encoding="utf-8") if target.is_file() else None
        result = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "show", f"{commit}:{file}"],
            capture_output=True,
            check=False,
        )
        return result.stdout.decode("utf-8") if result.returncode == 0 else None

    def has_commit(self, commit: str) -> bool:
        if self.git_dir is None:
            return False
        result = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0


def _git_dir(path: Path) -> Path | None:
    if (path / ".git").exists():
        return path / ".git"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path  # a bare repository
    return None


def find_checkout(official_dir: Path, repository: str) -> Checkout | None:
    """The copy of ``https://github.com/<owner>/<name>`` under ``official_dir``: a folder
    ``<owner>+<name>`` (or ``<owner>+<name>/repo``, as the snapshot tool lays them out) or
    ``<owner>/<name>``; a git repository (bare or not) or plain files."""
    owner, name = repository.removeprefix("https://github.com/").split("/", 1)
    for candidate in (
        official_dir / f"{owner}+{name}" / "repo",
        official_dir / f"{owner}+{name}",
        official_dir / owner / name,
    ):
        if candidate.is_dir():
            return Checkout(candidate, _git_dir(candidate))
    return None


def clone(official_dir: Path, repository: str) -> Checkout | None:
    """With network: a blobless clone into ``official_dir/<owner>+<name>``."""
    owner, name = repository.removeprefix("https://github.com/").split("/", 1)
    target = official_dir / f"{owner}+{name}"
    result = subprocess.run(
        ["git", "clone", "--quiet", "--filter=blob:none", "--no-checkout", repository, str(target)],
        capture_output=True,
        check=False,
    )
    return Checkout(target, target / ".git") if result.returncode == 0 else None


# ------------------------------------------------------------- loading only what is needed


class Unavailable:
    """Stands for a name whose import failed; raises, naming it, only when actually used."""

    def __init__(self, name: str, error: BaseException) -> None:
        self._name, self._error = name, error

    def _fail(self, *_args: object, **_kwargs: object) -> Any:
        raise RuntimeError(
            f"{self._name!r} is needed but could not be imported: {self._error!r}"
        ) from self._error

    __call__ = _fail

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        self._fail()


_BUILTINS = frozenset(dir(builtins))


def _bound_names(statement: ast.stmt) -> set[str]:
    """The module-level names a top-level statement binds."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {
            (alias.asname or alias.name).split(".")[0]
            for alias in statement.names
            if alias.name != "*"
        }
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        targets = [statement.target]
    if targets:
        return {
            node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)
        }
    if isinstance(statement, ast.Try | ast.If):  # e.g. try: import a / except: a = None
        blocks = [statement.body, statement.orelse]
        if isinstance(statement, ast.Try):
            blocks += [statement.finalbody, *(handler.body for handler in statement.handlers)]
        return {name for block in blocks for inner in block for name in _bound_names(inner)}
    return set()


def _used_names(node: ast.AST) -> set[str]:
    """Every name read anywhere inside ``node`` (an over-approximation of its free names)."""
    return {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    } - _BUILTINS


def _is_main_guard(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.If) and "__main__" in ast.unparse(statement.test)


@dataclass
class _Loader:
    """Loads definitions from files of one checkout at one commit."""

    checkout: Checkout
    commit: str
    in_progress: set[str] = field(default_factory=set)

    def source(self, file: str) -> str:
        text = self.checkout.read(self.commit, file)
        if text is None:
            raise FileNotFoundError(
                f"{file} not found at {self.commit[:10]} in {self.checkout.path}"
            )
        return text

    def module_file(self, importing_file: str, module: str | None, level: int) -> str | None:
        """The repository file an import refers to, if the repository has it."""
        parts = (module or "").split(".") if module else []
        if level:
            base = Path(importing_file).parent
            for _ in range(level - 1):
                base = base.parent
        else:
            base = Path()
        stem = base.joinpath(*parts) if parts else base
        for candidate in (f"{stem.as_posix()}.py", f"{stem.as_posix()}/__init__.py"):
            candidate = candidate.removeprefix("./")
            if self.checkout.read(self.commit, candidate) is not None:
                return candidate
        return None

    def load(
        self,
        file: str,
        names: set[str],
        extra_source: str | None = None,
        soft: bool = False,
    ) -> dict[str, Any]:
        """A namespace holding ``names`` from ``file`` (and what they need), executed alone.

        Names the file binds only through ``from module import *`` are looked up in that
        module (the repository's own file, loaded the same way, or an installed package).
        ``soft``: names not found are left out instead of raising ``NameError``.
        """
        tree = ast.parse(self.source(file), filename=file)
        statements = [s for s in tree.body if not _is_main_guard(s)]
        stars = [
            s
            for s in statements
            if isinstance(s, ast.ImportFrom) and any(a.name == "*" for a in s.names)
        ]
        binders: dict[str, list[int]] = {}
        for index, statement in enumerate(statements):
            for name in _bound_names(statement):
                binders.setdefault(name, []).append(index)
        wanted = set(names)
        if extra_source is not None:
            wanted |= _used_names(ast.parse(extra_source))
        chosen: set[int] = set()
        pending = [n for n in wanted if n in binders]
        unresolved = {n for n in wanted if n not in binders}
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            for index in binders[name]:
                if index in chosen:
                    continue
                chosen.add(index)
                used = _used_names(statements[index])
                pending += [n for n in used if n in binders]
                unresolved |= {n for n in used if n not in binders}
        namespace: dict[str, Any] = {"__name__": f"official:{file}", "__file__": file}
        if unresolved and stars and file not in self.in_progress:
            self.in_progress.add(file)
            try:
                for star in stars:
                    namespace.update(self._star(file, star, unresolved - namespace.keys()))
            finally:
                self.in_progress.discard(file)
        missing = {n for n in names if n not in binders and n not in namespace}
        if missing and not soft:
            raise NameError(f"{sorted(missing)} not defined at the top level of {file}")
        for index in sorted(chosen):
            self._execute(file, statements[index], namespace, seen)
        return namespace

    def _star(self, file: str, star: ast.ImportFrom, names: set[str]) -> dict[str, Any]:
        """Those of ``names`` that ``from module import *`` would bind."""
        local = self.module_file(file, star.module, star.level)
        if local is not None:
            try:
                found = self.load(local, names, soft=True)
            except Exception:  # a star module that cannot load binds nothing
                return {}
            return {n: found[n] for n in names if n in found}
        try:
            module = importlib.import_module(star.module or "")
        except Exception:
            return {}
        return {n: getattr(module, n) for n in names if hasattr(module, n)}

    def _execute(
        self, file: str, statement: ast.stmt, namespace: dict[str, Any], needed: set[str]
    ) -> None:
        if isinstance(statement, ast.ImportFrom):
            self._import_from(file, statement, namespace, needed)
            return
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                bound = (alias.asname or alias.name).split(".")[0]
                single = ast.Module(body=[ast.Import(names=[alias])], type_ignores=[])
                try:
                    exec(compile(ast.fix_missing_locations(single), file, "exec"), namespace)
                except Exception as error:  # any failing import is stubbed
                    namespace[bound] = Unavailable(alias.name, error)
            return
        decorators: list[Any] = []
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            decorators = self._usable_decorators(file, statement, namespace)
            statement = copy.copy(statement)
            statement.decorator_list = []
        code = compile(ast.Module(body=[statement], type_ignores=[]), file, "exec")
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                exec(code, namespace)
        except (Exception, SystemExit) as error:  # e.g. a script's ``opt = parser.parse_args()``
            for name in _bound_names(statement):
                namespace[name] = Unavailable(name, error)
            return
        for decorator in reversed(decorators):
            namespace[statement.name] = decorator(namespace[statement.name])

    @staticmethod
    def _usable_decorators(
        file: str, statement: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, namespace: dict
    ) -> list[Any]:
        """The decorators of a definition that can be evaluated, each evaluated once; one
        that fails (a registry's ``@LOSSES.register_module()`` from an import that failed) is
        left out: it registers the definition somewhere, it does not change it."""
        usable = []
        for decorator in statement.decorator_list:
            expression = ast.fix_missing_locations(ast.Expression(body=decorator))
            try:
                usable.append(eval(compile(expression, file, "eval"), namespace))
            except Exception:
                continue
        return usable

    def _import_from(
        self, file: str, statement: ast.ImportFrom, namespace: dict[str, Any], needed: set[str]
    ) -> None:
        aliases = [a for a in statement.names if (a.asname or a.name) in needed]
        local = self.module_file(file, statement.module, statement.level)
        if local is not None:
            names = {a.name for a in aliases}
            try:
                loaded = self.load(local, names)
            except Exception as error:
                loaded = {a.name: Unavailable(a.name, error) for a in aliases}
            for alias in aliases:
                namespace[alias.asname or alias.name] = loaded[alias.name]
            return
        for alias in aliases:
            single = ast.ImportFrom(module=statement.module, names=[alias], level=statement.level)
            try:
                module = ast.Module(body=[single], type_ignores=[])
                exec(compile(ast.fix_missing_locations(module), file, "exec"), namespace)
            except Exception as error:  # any failing import is stubbed
                namespace[alias.asname or alias.name] = Unavailable(
                    f"{statement.module}.{alias.name}", error
                )


def statements_at(source: str, lines: str) -> str:
    """The dedented source of the inclusive 1-based line range ``first-last``."""
    first, last = (int(n) for n in lines.split("-"))
    chosen = source.splitlines()[first - 1 : last]
    if not chosen or last < first:
        raise ValueError(f"lines {lines} are not in the file")
    return textwrap.dedent("\n".join(chosen)) + "\n"


def load_symbol(
    checkout: Checkout,
    commit: str,
    file: str,
    symbol: str,
    lines: str | None = None,
    also: tuple[str, ...] = (),
) -> SimpleNamespace:
    """A namespace with ``symbol`` (and ``also``) loaded from ``file`` at ``commit``.

    An entry ``path/other.py:Name`` of ``also`` loads ``Name`` from that file of the same
    repository (a helper the training script takes from elsewhere, e.g. a regressor).
    With ``lines``, ``symbol`` is a function running those statements: it takes their free
    variables as keyword arguments and returns every variable afterwards (a dict); the
    module-level names they use are loaded like a definition's.
    """
    loader = _Loader(checkout, commit)
    elsewhere = {}  # ``also`` entries ``other/file.py:Name``: definitions from another file
    for entry in also:
        if ":" in entry:
            other, name = entry.rsplit(":", 1)
            elsewhere[name] = loader.load(other, {name})[name]
    also = tuple(entry for entry in also if ":" not in entry)
    if lines is None:
        namespace = loader.load(file, {symbol, *also})
        public = {k: v for k, v in namespace.items() if not k.startswith("__")}
        return SimpleNamespace(**public, **elsewhere)
    snippet = statements_at(loader.source(file), lines)
    code = compile(snippet, f"{file}:{lines}", "exec")
    module_names = _used_names(ast.parse(snippet))
    namespace = loader.load(file, set(also), extra_source=snippet)
    available = {k: v for k, v in namespace.items() if k in module_names or k in also}

    def run(**variables: Any) -> dict[str, Any]:
        scope = {**namespace, **variables}
        exec(code, scope)
        return scope

    run.__name__ = symbol
    return SimpleNamespace(**available, **elsewhere, **{symbol: run}, source=snippet)


@contextlib.contextmanager
def no_cuda() -> Iterator[None]:
    """``tensor.cuda()`` and ``module.cuda()`` return what they are called on (CPU runs)."""
    import torch

    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved  # type: ignore[method-assign]


# ------------------------------------------------------------------------------ comparing

Tensors = Mapping[str, Any]  # name -> torch.Tensor


@dataclass
class Side:
    """One side's call: the function of the inputs and its learnable parameters by name."""

    call: Callable[[dict[str, Any]], Any]
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Pair:
    ours: Side
    theirs: Side


@dataclass(frozen=True)
class Adapter:
    """How one implementation and its authors' code are called on the same inputs.

    ``inputs(generator)`` makes float64 tensors by name (cast for the float32 run);
    ``student`` names those whose gradients are compared; ``build(official, dtype)``
    makes both sides (``official`` holds the loaded symbol), with equal parameters.
    """

    inputs: Callable[[Any], dict[str, Any]]
    student: tuple[str, ...]
    build: Callable[[SimpleNamespace, Any], Pair]
    also: tuple[str, ...] = ()
    seed: int = 0


def _errors(ours: Any, theirs: Any) -> Errors:
    import torch

    ours, theirs = ours.detach().double(), theirs.detach().double()
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: ours {tuple(ours.shape)}, theirs {tuple(theirs.shape)}")
    difference = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    scale = theirs.abs().max().item() if theirs.numel() else 0.0
    if not torch.isfinite(ours).all() or not torch.isfinite(theirs).all():
        return Errors(max_abs=float("inf"), max_rel=float("inf"))
    return Errors(max_abs=difference, max_rel=difference / scale if scale > 0 else difference)


def _run_side(side: Side, inputs: Tensors, student: tuple[str, ...], seed: int) -> tuple[Any, dict]:
    """Output and gradients (w.r.t. the student inputs and the parameters) of one side."""
    import torch

    leaves = {
        name: (
            value.detach().clone().requires_grad_(name in student)
            if value.is_floating_point()
            else value.clone()
        )
        for name, value in inputs.items()
    }
    for parameter in side.parameters.values():
        parameter.grad = None
    torch.manual_seed(seed)
    output = side.call(leaves)
    output = output if output.dim() == 0 else output.sum()
    wrt = {**{n: leaves[n] for n in student}, **dict(side.parameters)}
    grads = torch.autograd.grad(output, list(wrt.values()), allow_unused=True)
    return output.detach(), {
        name: (grad if grad is not None else torch.zeros_like(tensor))
        for (name, tensor), grad in zip(wrt.items(), grads, strict=True)
    }


def compare(adapter: Adapter, official: SimpleNamespace) -> dict[str, Any]:
    """Both sides in float64 and float32; our float32 against our float64 (the noise floor)."""
    import torch

    generator = torch.Generator().manual_seed(adapter.seed)
    base = adapter.inputs(generator)
    runs: dict[str, PrecisionRun] = {}
    ours_by_dtype = {}
    for label, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in base.items()}
        with no_cuda():
            torch.manual_seed(adapter.seed)
            pair = adapter.build(official, dtype)
            if set(pair.ours.parameters) != set(pair.theirs.parameters):
                raise ValueError(
                    f"parameters differ: ours {sorted(pair.ours.parameters)}, "
                    f"theirs {sorted(pair.theirs.parameters)}"
                )
            ours = _run_side(pair.ours, inputs, adapter.student, adapter.seed)
            theirs = _run_side(pair.theirs, inputs, adapter.student, adapter.seed)
        ours_by_dtype[label] = ours
        runs[label] = PrecisionRun(
            output=_errors(ours[0], theirs[0]),
            gradients={name: _errors(ours[1][name], theirs[1][name]) for name in ours[1]},
        )
    floor_run = PrecisionRun(
        output=_errors(ours_by_dtype["float32"][0], ours_by_dtype["float64"][0]),
        gradients={
            name: _errors(ours_by_dtype["float32"][1][name], grad)
            for name, grad in ours_by_dtype["float64"][1].items()
        },
    )
    return {
        "shapes": {k: list(v.shape) for k, v in base.items()},
        "compared": list(runs["float64"].gradients),
        "float64": runs["float64"],
        "float32": runs["float32"],
        "float32_noise_floor": floor_run.max_rel,
    }


def make_record(
    root: Path,
    implementation: Any,
    commit_checked: bool,
    result: Mapping[str, Any],
    date: str,
) -> OfficialRecord:
    """The record of one comparison (``implementation`` is a taxonomy ``Implementation``)."""
    import platform

    import torch

    code = implementation.authors_code
    path = method_file(implementation.object.partition(":")[0])
    float64, float32 = result["float64"], result["float32"]
    return OfficialRecord(
        id=implementation.id,
        object=implementation.object,
        repository=code.repository,
        commit=code.commit,
        commit_checked=commit_checked,
        authors=code.authors,
        file=code.file,
        symbol=code.symbol,
        lines=code.lines,
        configuration=code.configuration,
        differs_at_defaults=code.differs_at_defaults,
        known_difference=code.known_difference,
        shapes=result["shapes"],
        compared=result["compared"],
        float64=float64,
        float32=float32,
        float32_noise_floor=result["float32_noise_floor"],
        max_relative_error=float32.max_rel,
        max_relative_error_float64=float64.max_rel,
        equal=verdict(float64.max_rel, float32.max_rel, result["float32_noise_floor"]),
        date=date,
        torch=torch.__version__,
        python=platform.python_version(),
        files={path: sha256_bytes((root / path).read_bytes())},
    )


def write_record(directory: Path, record: OfficialRecord) -> Path:
    """Writes ``<directory>/<id>.json``."""
    path = directory / f"{record.id}.json"
    directory.mkdir(parents=True, exist_ok=True)
    data = record.model_dump(mode="json")
    path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return path


_SHORT = re.compile(r"(\d)(?:\.0+)?e([+-])0*(\d)")


def short_float(value: float) -> str:
    """``2.3e-07``-style, one significant digit more than needed: ``2e-07`` -> ``2e-7``."""
    if value == 0:
        return "0"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return _SHORT.sub(
        lambda m: f"{m.group(1)}e{'-' if m.group(2) == '-' else ''}{m.group(3)}", f"{value:.0e}"
    )
