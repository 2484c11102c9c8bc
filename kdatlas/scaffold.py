"""Start a new reference implementation (``kdatlas new implementation``).

One call writes the three things every implementation has, in the places
``kdatlas check`` looks for them:

* the method file ``reference_impls/<area>/<leaf>/<module>.py``: a module
  docstring with the sections of the design page (citation, authors' code,
  equation, defaults, deviations) and a class that subclasses
  ``DistillationLoss`` or ``DistillationProcedure``, checks its arguments with
  ``reference_impls.common.validation`` and whose ``forward`` raises
  ``NotImplementedError`` until it is written;
* the test file ``tests/reference_impls/<area>/<leaf>/test_<module>.py`` with the
  method-specific tests as stubs that fail until written (the generic contract
  is checked for every implementation by ``tests/reference_impls/test_contracts.py``);
* the taxonomy entry, appended to the leaf's ``implementations`` through a
  ruamel round trip, so comments stay and the file stays in ``kdatlas fmt`` form;
* the export: the leaf package's ``__init__.py`` imports the class and lists it in
  ``__all__`` (``from reference_impls.<area>.<leaf> import Class``), kept sorted;
  a hand-edited ``__init__.py`` is left alone with a note saying what to add.

Everything is checked before anything is written: a malformed id or class name,
an unknown leaf or paper, an implementation id already used anywhere in the
taxonomy, or a target file that exists is refused with one line, and nothing
changes. Then every file is written through :func:`kdatlas.atomic.replace_files`
(all or none); folders it had to create are removed again if that fails.
"""

from __future__ import annotations

import ast
import copy
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from kdatlas.atomic import replace_files
from kdatlas.bibliography import BibEntry, author_names, display
from kdatlas.checks import TESTS_DIR, leaf_folder
from kdatlas.fmt import dump_yaml, format_yaml
from kdatlas.loader import (
    TAXONOMY_DIR,
    is_root,
    read_bibliography,
    read_yaml,
    yaml_line,
)
from kdatlas.models import AREA_IDS, SLUG, Leaf
from kdatlas.problems import Problem

KINDS = ("loss", "procedure")
# The kinds of ``reference_impls.common.interfaces.INPUT_KINDS``, repeated so the CLI needs no
# torch import; tests/kdatlas/test_scaffold.py asserts the two agree.
INPUT_KINDS = ("logits", "features", "preact_features", "embeddings")
PACKAGE_DOCSTRING = '"""Reference implementations filed under this taxonomy node."""\n'


class ScaffoldError(Exception):
    """Nothing was written; ``problem`` says why, on one line."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def _refuse(where: Path | str, message: str) -> ScaffoldError:
    return ScaffoldError(Problem(where, None, message))


@dataclass(frozen=True)
class Request:
    """What ``kdatlas new implementation`` was asked for."""

    leaf: str  # "area/leaf"
    id: str
    papers: Sequence[str]
    class_name: str | None = None
    kind: str = "loss"
    inputs: str | None = None  # a loss's input kind; None: logits
    needs_target: bool = False
    title: str | None = None

    @property
    def loss_inputs(self) -> str:
        return self.inputs or "logits"


@dataclass
class Scaffold:
    """What was (or would be) written, and what the contributor does next."""

    area: str
    leaf: str
    module: str  # dotted import path of the method module
    class_name: str
    method_file: Path  # root-relative
    test_file: Path
    taxonomy_file: Path
    created: list[Path] = field(default_factory=list)  # every file written, root-relative
    texts: dict[Path, str] = field(default_factory=dict, repr=False)
    notebook: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def object_path(self) -> str:
        return f"{self.module}:{self.class_name}"


# --------------------------------------------------------------------------- names


def module_name(implementation_id: str) -> str:
    """The implementation's module: its id with hyphens as underscores."""
    return implementation_id.replace("-", "_")


def _words(implementation_id: str) -> list[str]:
    """A short one-word id reads as an acronym (kd -> KD, pskd -> PSKD), others as words
    (logit-standardization -> Logit Standardization); --class and --title say otherwise."""
    parts = implementation_id.split("-")
    if len(parts) == 1 and len(parts[0]) <= 5:
        return [parts[0].upper()]
    return [part.capitalize() for part in parts]


def default_class_name(implementation_id: str, kind: str) -> str:
    """``dkd`` -> ``DKDLoss``, ``logit-standardization`` -> ``LogitStandardizationLoss``; a
    procedure gets no suffix (``dml`` -> ``DML``)."""
    return "".join(_words(implementation_id)) + ("Loss" if kind == "loss" else "")


def _surnames(entry: BibEntry) -> list[str]:
    return [name.split()[-1] for name in author_names(entry) if name != "et al." and name.split()]


def short_citation(entry: BibEntry) -> str:
    """``Hinton et al., 2015``, ``Zheng and Yang, 2024``, or the year alone without authors."""
    names = _surnames(entry)
    year = entry.fields.get("year", "").strip()
    if not names:
        return year
    if len(names) > 2:
        return f"{names[0]} et al., {year}"
    return f"{' and '.join(names)}, {year}"


def default_title(implementation_id: str, entry: BibEntry) -> str:
    """``DKD (Zhao et al., 2022)``: the taxonomy's title form."""
    return f"{' '.join(_words(implementation_id))} ({short_citation(entry)})"


def _full_citation(entry: BibEntry) -> str:
    """``hinton2015distilling`` (Hinton, Vinyals and Dean, arXiv 2015), for the docstring."""
    names = _surnames(entry)
    authors = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    venue = entry.fields.get("booktitle") or entry.fields.get("journal") or ""
    venue = "arXiv" if venue.strip().lower() == "arxiv preprint" else display(venue)
    when = " ".join(part for part in (venue, entry.fields.get("year", "").strip()) if part)
    inside = ", ".join(part for part in (authors, when) if part)
    return f"``{entry.key}`` ({inside})"


# --------------------------------------------------------------------------- templates

# Placeholders are <<name>>; the LaTeX and the format strings of the generated code keep their
# braces. The generated code is laid out as ``ruff format`` writes it (the tests check that).

METHOD_DOCSTRING = '''\
r"""<<title>>: TODO one sentence saying what knowledge is transferred and how.

Citation: <<citations>>.
Authors' code: <<code>>

TODO: define the symbols, then write the key equation as the paper numbers it, with the
reduction the authors' code uses (sum over what, mean over what):

$$
\\mathcal{L} = \\text{TODO}
$$

Defaults: TODO the values of the authors' code for the paper's main CIFAR-100 setting, each
with the file it comes from.

Deviations: TODO every deliberate difference from the authors' code, with its reason; where
their code and the paper differ, follow the code and say exactly how they differ. Write
"none" when there is none.
"""
'''

NOT_WRITTEN = """\
        raise NotImplementedError(
            f"{type(self).__name__}.forward is not written yet: TODO implement the equation "
            "of the module docstring (reference_impls/sources/logit/kd.py is a finished example)"
        )
"""

LOSS_CLASS = '''\


class <<class>>(DistillationLoss):
    """TODO one line: what the loss compares.

    Args:
<<args_doc>>
    """

    inputs: ClassVar[str] = "<<inputs>>"
    needs_target: ClassVar[bool] = <<needs_target>>

<<init>>

<<forward>>
<<not_written>>
    def extra_repr(self) -> str:
        return f"<<repr>>"
'''

# Per kind of input: the constructor (its example hyperparameter checked by the shared
# validation helpers), its Args docs, the forward signature and what extra_repr shows.
LOSS_PARTS: dict[str, dict[str, str]] = {
    "logits": {
        "imports": "from reference_impls.common.validation import positive",
        "args_doc": "        temperature: TODO replace with the method's hyperparameters at the authors'\n"
        "            defaults, each checked with ``reference_impls.common.validation``.",
        "init": """\
    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = positive("temperature", temperature)""",
        "inputs": "student_logits: torch.Tensor, teacher_logits: torch.Tensor",
        "repr": "temperature={self.temperature}",
    },
    "features": {
        "imports": "from reference_impls.common.validation import non_negative",
        "args_doc": "        student_channels: channels of every tapped student stage (e.g. ``(8, 16, 32)``).\n"
        "        teacher_channels: channels of every tapped teacher stage (e.g. ``(32, 64, 128)``).\n"
        "        weight: TODO replace with the method's hyperparameters at the authors' defaults,\n"
        "            each checked with ``reference_impls.common.validation``.",
        "init": """\
    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        # TODO: build the trainable connectors (regressors, adapters) from the channel sizes
        self.student_channels = tuple(student_channels)
        self.teacher_channels = tuple(teacher_channels)
        self.weight = non_negative("weight", weight)""",
        "inputs": "student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]",
        "repr": "weight={self.weight}",
    },
    "embeddings": {
        "imports": "from reference_impls.common.validation import non_negative",
        "args_doc": "        weight: TODO replace with the method's hyperparameters at the authors' defaults,\n"
        "            each checked with ``reference_impls.common.validation``.",
        "init": """\
    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = non_negative("weight", weight)""",
        "inputs": "student_emb: torch.Tensor, teacher_emb: torch.Tensor",
        "repr": "weight={self.weight}",
    },
}
LOSS_PARTS["preact_features"] = LOSS_PARTS["features"]

PROCEDURE_CLASS = '''\


class <<class>>(DistillationProcedure):
    """TODO one line: which models it trains and how they teach each other.

    Args:
        student: the network whose accuracy is reported (TODO: add the other models it
            owns: teacher, peers, branches).
        weight: TODO replace with the method's hyperparameters at the authors' defaults,
            each checked with ``reference_impls.common.validation``.
    """

    def __init__(self, student: nn.Module, weight: float = 1.0) -> None:
        super().__init__()
        self.student = student
        self.weight = non_negative("weight", weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        # TODO: return {"loss": total, <term>: term.detach(), ...}
<<not_written>>
    def extra_repr(self) -> str:
        return f"weight={self.weight}"
'''

TEST_FILE = '''\
"""<<title>>: a hand value, a property from the paper, the training effect.

The contract every implementation meets (construction at defaults, gradients, determinism,
state_dict, CPU/CUDA and bf16) is checked for all of them by
tests/reference_impls/test_contracts.py; this file holds only what is specific to
<<class>>. Each stub fails until it is written.
"""

from __future__ import annotations

import pytest

<<import>>


def test_hand_computed_value():
    # A tiny input (one or two samples, two or three classes or channels) whose value you work
    # out by hand in the comment, then pytest.approx; see test_kd.py::test_hand_computed_value.
    pytest.fail(
        f"not written yet: {<<class>>.__name__} on a tiny input equals a value worked out by hand in a comment"
    )


def test_property_from_the_paper():
    # Something the paper states or implies: zero when student and teacher agree, an
    # invariance, a limit in which it becomes a known method, a bound, a symmetry.
    pytest.fail(
        f"not written yet: a property of {<<class>>.__name__} that the paper states or implies, on a small input"
    )


def test_training_moves_student_toward_teacher():
    # A short seeded run (reference_impls.common.testing.digits_setup and train) compared with
    # the same-seed baseline without the method; see test_kd.py for the pattern.
    pytest.fail(
        f"not written yet: a short seeded run with {<<class>>.__name__} beats the same-seed baseline without it"
    )
'''


def _fill(template: str, **values: str) -> str:
    text = template
    for name, value in values.items():
        text = text.replace(f"<<{name}>>", value)
    left = re.search(r"<<\w+>>", text)
    assert left is None, f"template placeholder {left.group(0)} not filled"
    return text


def _signature(method: str, parameters: str, returns: str) -> str:
    """A ``def`` line as ``ruff format`` lays it out at 100 columns."""
    one_line = f"    def {method}(self, {parameters}) -> {returns}:"
    if len(one_line) <= 100:
        return one_line
    inner = f"        self, {parameters}"
    if len(inner) <= 100:
        return f"    def {method}(\n{inner}\n    ) -> {returns}:"
    arguments = "".join(f"        {part.strip()},\n" for part in f"self, {parameters}".split(", "))
    return f"    def {method}(\n{arguments}    ) -> {returns}:"


def _import_line(module: str, name: str) -> str:
    line = f"from {module} import {name}"
    return line if len(line) <= 100 else f"from {module} import (\n    {name},\n)"


def method_source(request: Request, scaffold: Scaffold, entries: Sequence[BibEntry]) -> str:
    codes = [entry.fields["code"] for entry in entries if entry.fields.get("code", "").strip()]
    code = (
        f"{codes[0]} (TODO: the file and function that implement the method)."
        if codes
        else "TODO the authors' repository and the file implementing the method, or\n"
        '"none released" and the re-implementation the defaults follow.'
    )
    docstring = _fill(
        METHOD_DOCSTRING,
        title=scaffold_title(request, entries),
        citations="; ".join(_full_citation(entry) for entry in entries),
        code=code,
    )
    not_written = NOT_WRITTEN
    if request.kind == "procedure":
        imports = [
            "import torch",
            "from torch import nn",
            "",
            "from reference_impls.common import DistillationProcedure",
            "from reference_impls.common.validation import non_negative",
        ]
        body = _fill(PROCEDURE_CLASS, **{"class": scaffold.class_name, "not_written": not_written})
    else:
        parts = LOSS_PARTS[request.loss_inputs]
        parameters = parts["inputs"] + (", target: torch.Tensor" if request.needs_target else "")
        stdlib = ["from typing import ClassVar"]
        if "Sequence[" in parts["init"] + parameters:
            stdlib.insert(0, "from collections.abc import Sequence")
        imports = [
            *stdlib,
            "",
            "import torch",
            "",
            "from reference_impls.common import DistillationLoss",
            parts["imports"],
        ]
        body = _fill(
            LOSS_CLASS,
            **{
                "class": scaffold.class_name,
                "args_doc": parts["args_doc"],
                "inputs": request.loss_inputs,
                "needs_target": str(request.needs_target),
                "init": parts["init"],
                "forward": _signature("forward", parameters, "torch.Tensor"),
                "not_written": not_written,
                "repr": parts["repr"],
            },
        )
    header = ["from __future__ import annotations", ""]
    return docstring + "\n" + "\n".join([*header, *imports]) + "\n" + body


def tests_source(request: Request, scaffold: Scaffold, entries: Sequence[BibEntry]) -> str:
    return _fill(
        TEST_FILE,
        title=scaffold_title(request, entries),
        **{
            "class": scaffold.class_name,
            "import": _import_line(scaffold.module, scaffold.class_name),
        },
    )


def scaffold_title(request: Request, entries: Sequence[BibEntry]) -> str:
    return request.title or default_title(request.id, entries[0])


# --------------------------------------------------------------------------- checks


def _check_names(request: Request) -> tuple[str, str, str]:
    """(area, leaf, class name) once the id, leaf, class, kind and inputs are well formed."""
    if not SLUG.match(request.id):
        raise _refuse(
            "--id", f"'{request.id}' is not a slug (lowercase letters, digits and single hyphens)"
        )
    module = module_name(request.id)
    if not module.isidentifier() or keyword.iskeyword(module):
        raise _refuse(
            "--id",
            f"'{request.id}' cannot name a Python module ('{module}'); start it with a letter",
        )
    parts = request.leaf.strip().strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise _refuse("--leaf", f"'{request.leaf}' is not area/leaf (e.g. sources/logit)")
    if request.kind not in KINDS:
        raise _refuse("--kind", f"'{request.kind}' is not one of {', '.join(KINDS)}")
    if request.kind == "procedure" and (request.inputs is not None or request.needs_target):
        option = "--inputs" if request.inputs is not None else "--needs-target"
        raise _refuse(option, "applies to a loss; a procedure reads its models' outputs itself")
    if request.kind == "loss" and request.loss_inputs not in INPUT_KINDS:
        raise _refuse("--inputs", f"'{request.inputs}' is not one of {', '.join(INPUT_KINDS)}")
    class_name = request.class_name or default_class_name(request.id, request.kind)
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise _refuse("--class", f"'{class_name}' is not a Python class name")
    if not request.papers:
        raise _refuse("--paper", "give the bib key of the paper the method comes from")
    if request.title is not None and not request.title.strip():
        raise _refuse("--title", "the title is empty")
    return parts[0], parts[1], class_name


def _taxonomy_documents(root: Path) -> dict[Path, Any]:
    """Every taxonomy file parsed (root-relative path -> ruamel document); refuse on a parse error."""
    documents: dict[Path, Any] = {}
    for path in sorted((root / TAXONOMY_DIR).glob("*.y*ml")):
        display_path = path.relative_to(root)
        document, problems = read_yaml(path, display_path)
        if problems:
            raise ScaffoldError(problems[0])
        documents[display_path] = document
    return documents


def _leaves(document: Any) -> list[Any]:
    leaves = document.get("leaves") if isinstance(document, CommentedMap) else None
    return [leaf for leaf in leaves or [] if isinstance(leaf, CommentedMap)]


def _refuse_taken_id(documents: dict[Path, Any], implementation_id: str) -> None:
    for path, document in documents.items():
        for i, leaf in enumerate(_leaves(document)):
            for j, implementation in enumerate(leaf.get("implementations") or []):
                if (
                    isinstance(implementation, CommentedMap)
                    and implementation.get("id") == implementation_id
                ):
                    line = yaml_line(document, ("leaves", i, "implementations", j, "id"))
                    raise _refuse(
                        "--id",
                        f"implementation id '{implementation_id}' is already used at {path}:{line}",
                    )


def _find_leaf(
    documents: dict[Path, Any], area: str, leaf_id: str
) -> tuple[Path, Any, CommentedMap]:
    path = Path(TAXONOMY_DIR) / f"{area}.yaml"
    if area not in AREA_IDS or path not in documents:
        raise _refuse("--leaf", f"no area '{area}' (the areas are {', '.join(AREA_IDS)})")
    for leaf in _leaves(documents[path]):
        if leaf.get("id") == leaf_id:
            return path, documents[path], leaf
    elsewhere = [
        other.stem
        for other, document in documents.items()
        if any(leaf.get("id") == leaf_id for leaf in _leaves(document))
    ]
    hint = f" (it is under {elsewhere[0]}: --leaf {elsewhere[0]}/{leaf_id})" if elsewhere else ""
    raise _refuse("--leaf", f"area '{area}' has no leaf '{leaf_id}'{hint}")


def _paper_entries(root: Path, keys: Sequence[str]) -> list[BibEntry]:
    entries, _ = read_bibliography(root)
    by_key = {entry.key: entry for entry in entries}
    for key in keys:
        if key not in by_key:
            raise _refuse(
                "--paper", f"bib key '{key}' is not in bib/; add the paper first with 'kdatlas add'"
            )
    return [by_key[key] for key in keys]


def _filed_under(leaf: CommentedMap, keys: Sequence[str]) -> list[str]:
    """The keys of ``keys`` not among the leaf's papers or its topics' papers."""
    filed = set(leaf.get("papers") or [])
    for topic in leaf.get("topics") or []:
        if isinstance(topic, CommentedMap):
            filed.update(topic.get("papers") or [])
    return [key for key in keys if key not in filed]


# --------------------------------------------------------------------------- the taxonomy entry


def _slot_chain(node: Any) -> list[tuple[Any, Any, int]]:
    """(container, key, comment slot) of the last element at each depth under ``node``, from
    the outermost down to the last scalar: where ruamel keeps the comment lines after it."""
    chain = []
    while isinstance(node, CommentedMap | CommentedSeq) and node:
        key, slot = (list(node)[-1], 2) if isinstance(node, CommentedMap) else (len(node) - 1, 0)
        chain.append((node, key, slot))
        node = node[key]
    return chain


def _take_following_lines(node: Any) -> CommentToken | None:
    """Detach the full-line comments (and blank lines) that follow ``node`` in the file.

    ruamel attaches them to the last scalar under ``node``; appending after it would leave them
    stranded above the new item, so they are moved to the new last scalar instead. An end-of-line
    comment on that scalar stays where it is.
    """
    for container, key, slot in reversed(_slot_chain(node)):
        comments = container.ca.items.get(key)
        token = comments[slot] if comments and len(comments) > slot else None
        if not isinstance(token, CommentToken) or "\n" not in token.value:
            continue
        own, _, following = token.value.partition("\n")
        if not following:
            return None
        moved = copy.deepcopy(token)
        moved.value = "\n" + following
        if own.strip():
            token.value = own + "\n"
        else:
            comments[slot] = None
        return moved
    return None


def _put_following_lines(node: Any, token: CommentToken | None) -> None:
    chain = _slot_chain(node)
    if token is None or not chain:
        return
    container, key, index = chain[-1]
    comments = container.ca.items.setdefault(key, [None, None, None, None])
    if isinstance(comments[index], CommentToken):  # keep that scalar's own end-of-line comment
        token.value = comments[index].value.rstrip("\n") + token.value
    comments[index] = token


def _entry(
    implementation_id: str, title: str, object_path: str, papers: Sequence[str]
) -> CommentedMap:
    entry = CommentedMap()
    entry["id"] = implementation_id
    entry["title"] = title
    entry["object"] = object_path
    entry["papers"] = CommentedSeq(papers)
    return entry


def _append_entry(leaf: CommentedMap, entry: CommentedMap) -> None:
    """Append ``entry`` to the leaf's implementations (creating the list in its canonical place)."""
    following = _take_following_lines(leaf)
    implementations = leaf.get("implementations")
    if implementations is None:
        implementations = CommentedSeq()
        order = list(Leaf.model_fields)
        before = set(order[: order.index("implementations")])
        position = max((i + 1 for i, key in enumerate(leaf) if key in before), default=len(leaf))
        leaf.insert(position, "implementations", implementations)
    implementations.append(entry)
    _put_following_lines(leaf, following)


# --------------------------------------------------------------------------- exports


def package_exports(text: str) -> tuple[str, list[tuple[str, str]], list[str]] | None:
    """A leaf ``__init__.py`` as (docstring, ``from M import C`` pairs, ``__all__``).

    ``None`` when the file holds anything else (it was edited by hand): the scaffold
    then leaves it alone and says what to add.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    docstring = ast.get_docstring(tree, clean=False) or PACKAGE_DOCSTRING.strip().strip('"')
    imports: list[tuple[str, str]] = []
    exports: list[str] = []
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if any(alias.asname or alias.name == "*" for alias in node.names):
                return None
            imports += [(node.module, alias.name) for alias in node.names]
        elif (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            and isinstance(node.value, ast.List | ast.Tuple)
            and all(isinstance(e, ast.Constant) for e in node.value.elts)
        ):
            exports = [e.value for e in node.value.elts]
        else:
            return None
    return docstring, imports, exports


def import_line(module: str, *names: str) -> str:
    """``from module import a, b`` as ruff's isort writes it: names in ``ruff_order``, one line,
    or parenthesised with one name per line when past 100 columns."""
    ordered = sorted(set(names), key=ruff_order)
    line = f"from {module} import {', '.join(ordered)}"
    if len(line) <= 100:
        return line
    return f"from {module} import (\n" + "".join(f"    {name},\n" for name in ordered) + ")"


def ruff_order(name: str) -> tuple[int, list[int | str]]:
    """``__all__`` order as ruff's RUF022 sorts it: CONSTANTS (two or more characters), then
    Classes, then functions; each in natural order (``Loss2`` before ``Loss10``)."""
    group = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def package_text(docstring: str, imports: Sequence[tuple[str, str]], exports: Sequence[str]) -> str:
    """A leaf ``__init__.py`` that imports each implementation and lists it in ``__all__``."""
    lines = [f'"""{docstring}"""', ""]
    if imports:
        by_module: dict[str, list[str]] = {}
        for module, name in sorted(set(imports)):
            by_module.setdefault(module, []).append(name)
        lines += [import_line(module, *names) for module, names in by_module.items()]
        lines.append("")
    if exports:
        names = sorted(set(exports), key=ruff_order)
        lines += ["__all__ = [", *(f'    "{name}",' for name in names), "]"]
    return "\n".join(lines).rstrip("\n") + "\n"


def export_from_package(text: str, module: str, class_name: str) -> str | None:
    """``text`` (a leaf ``__init__.py``) with ``from module import class_name`` and its
    ``__all__`` entry added, or ``None`` when the file is not in the form the scaffold writes."""
    parsed = package_exports(text)
    if parsed is None or (text.strip() and package_text(*parsed) != text):
        return None  # hand-written (comments, other order, other statements): not rewritten
    docstring, imports, exports = parsed
    return package_text(docstring, [*imports, (module, class_name)], [*exports, class_name])


# --------------------------------------------------------------------------- writing


def plan(root: Path, request: Request) -> Scaffold:
    """Check the request against the tree and build every new text; writes nothing."""
    root = Path(root).resolve()
    if not is_root(root):
        raise _refuse(root, "not a KD Atlas root (no taxonomy/ and bib/ there)")
    area, leaf_id, class_name = _check_names(request)
    documents = _taxonomy_documents(root)
    taxonomy_file, document, leaf = _find_leaf(documents, area, leaf_id)
    _refuse_taken_id(documents, request.id)
    entries = _paper_entries(root, request.papers)

    folder = leaf_folder(area, leaf_id)
    module = module_name(request.id)
    scaffold = Scaffold(
        area=area,
        leaf=leaf_id,
        module=".".join((folder / module).parts),
        class_name=class_name,
        method_file=folder / f"{module}.py",
        test_file=TESTS_DIR / folder / f"test_{module}.py",
        taxonomy_file=taxonomy_file,
        notebook=leaf.get("notebook"),
    )
    for target in (scaffold.method_file, scaffold.test_file):
        if (root / target).exists():
            raise _refuse(target, "already exists; choose another --id or remove the file")

    texts: dict[Path, str] = {}
    area_init = folder.parent / "__init__.py"
    if not (root / area_init).exists():
        texts[area_init] = PACKAGE_DOCSTRING
    texts[scaffold.method_file] = method_source(request, scaffold, entries)
    texts[scaffold.test_file] = tests_source(request, scaffold, entries)
    # the leaf's package exports the class: ``from reference_impls.<area>.<leaf> import Class``
    leaf_init = folder / "__init__.py"
    existing = (
        (root / leaf_init).read_text(encoding="utf-8") if (root / leaf_init).exists() else None
    )
    exported = export_from_package(existing or PACKAGE_DOCSTRING, scaffold.module, class_name)
    if exported is None:
        scaffold.notes.append(
            f"{leaf_init} is not in the scaffold's form: add `from {scaffold.module} import "
            f'{class_name}` and "{class_name}" to its __all__ by hand'
        )
    else:
        texts[leaf_init] = exported

    was_canonical = format_yaml(root / taxonomy_file, taxonomy_file)[0] == (
        root / taxonomy_file
    ).read_text(encoding="utf-8")
    title = scaffold_title(request, entries)
    papers = list(dict.fromkeys(request.papers))
    _append_entry(leaf, _entry(request.id, title, scaffold.object_path, papers))
    texts[taxonomy_file] = dump_yaml(document)
    scaffold.texts = texts

    if not was_canonical:
        scaffold.notes.append(
            f"{taxonomy_file} was not in canonical form; it is now (as kdatlas fmt writes it)"
        )
    if unfiled := _filed_under(leaf, request.papers):
        keys = ", ".join(unfiled)
        scaffold.notes.append(
            f"{keys} not filed under {area}/{leaf_id}: add to its papers (or a topic's) if it belongs there"
        )
    return scaffold


def write(root: Path, scaffold: Scaffold) -> None:
    """Write the planned texts, all or none; remove the folders created if writing fails."""
    root = Path(root).resolve()
    created: list[Path] = []
    try:
        for relative in scaffold.texts:
            missing = []
            parent = (root / relative).parent
            while not parent.exists():
                missing.append(parent)
                parent = parent.parent
            for folder in reversed(missing):
                folder.mkdir()
                created.append(folder)
        replace_files({root / relative: text for relative, text in scaffold.texts.items()})
    except BaseException:
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    scaffold.created = list(scaffold.texts)


def new_implementation(root: Path, request: Request) -> Scaffold:
    """Check, then write the method file, its test file and the taxonomy entry together."""
    scaffold = plan(root, request)
    write(root, scaffold)
    return scaffold


def next_steps(scaffold: Scaffold) -> list[str]:
    """What the contributor does after the scaffold, in order."""
    method = scaffold.method_file.as_posix()
    steps = [
        f"read the paper and the authors' code; fill the docstring of {method} (citation, "
        "equation, authors' code, defaults, deviations) and write forward",
        f"write the three stubs of {scaffold.test_file.as_posix()} (each fails until written)",
    ]
    if scaffold.notebook:
        steps.append(
            f"use {scaffold.class_name} in the leaf's notebook {scaffold.notebook} "
            "(kdatlas check requires every implementation of a leaf to appear in its notebook)"
        )
    else:
        expected = f"docs/notebooks/{scaffold.area}/{scaffold.leaf}.py"
        steps.append(
            f"the leaf {scaffold.area}/{scaffold.leaf} has no notebook yet: create {expected} "
            f"(jupytext percent format), set it as the leaf's notebook: in {scaffold.taxonomy_file} "
            f"and use {scaffold.class_name} in it"
        )
    steps.append(
        f"run kdatlas fmt, kdatlas check, ruff check and ruff format, and "
        f"pytest {scaffold.test_file.as_posix()}"
    )
    return steps


__all__ = [
    "INPUT_KINDS",
    "KINDS",
    "Request",
    "Scaffold",
    "ScaffoldError",
    "default_class_name",
    "default_title",
    "export_from_package",
    "module_name",
    "new_implementation",
    "next_steps",
    "plan",
    "write",
]
