"""``benchmarks/reported/``: numbers reported by papers and READMEs, their model, the loader's
errors at file:line, the checks against the bibliography and the taxonomy, and the files we
commit."""

from __future__ import annotations

from pathlib import Path

from kdatlas.loader import load_with_problems

SETTINGS = (
    "settings:\n"  # 1
    "  - id: cifar100-resnet32x4-resnet8x4\n"  # 2
    "    dataset: CIFAR-100 (test split)\n"  # 3
    "    teacher: ResNet32x4\n"  # 4
    "    student: ResNet8x4\n"  # 5
    "    metric: top-1 accuracy (%)\n"  # 6
)
SOURCE = (
    "source:\n"  # 1
    "  title: A README table\n"  # 2
    "  url: https://github.com/owner/repo/blob/0123abc/README.md#L1-L9\n"  # 3
    "  table: README, the first table\n"  # 4
    "  reported_by: zhao2022decoupled\n"  # 5
    "  retrieved: 2026-11-30\n"  # 6
    "baselines:\n"  # 7
    "  cifar100-resnet32x4-resnet8x4: {teacher: 79.42, student: 72.5}\n"  # 8
    "results:\n"  # 9
    "  - {paper: hinton2015distilling, implementation: kd, setting: cifar100-resnet32x4-resnet8x4, value: 73.33}\n"  # 10
    "  - {paper: zhao2022decoupled, setting: cifar100-resnet32x4-resnet8x4, value: 76.32, std: 0.1}\n"  # 11
)
FOLDER = "benchmarks/reported"
ROOT = Path(__file__).resolve().parents[2]


def _write(fixture_kb, source: str = SOURCE, settings: str | None = SETTINGS) -> None:
    if settings is not None:
        fixture_kb.write(f"{FOLDER}/settings.yaml", settings)
    fixture_kb.write(f"{FOLDER}/dkd-readme.yaml", source)


def _errors(root) -> list[str]:
    _kb, problems = load_with_problems(root)
    return [str(problem) for problem in problems if problem.is_error]


def test_a_good_source_loads_with_its_settings(fixture_kb):
    _write(fixture_kb)
    kb, problems = load_with_problems(fixture_kb.root)
    assert [p for p in problems if p.is_error] == []
    reported = kb.reported["reported:dkd-readme"]
    assert reported.source.reported_by == "zhao2022decoupled"
    assert [(r.implementation, r.value, r.std) for r in reported.results] == [
        ("kd", 73.33, None),
        (None, 76.32, 0.1),
    ]
    assert reported.baselines["cifar100-resnet32x4-resnet8x4"].teacher == 79.42
    assert kb.reported_settings.settings[0].teacher == "ResNet32x4"


def test_the_folder_is_optional(fixture_kb):
    kb, problems = load_with_problems(fixture_kb.root)
    assert kb.reported == {} and [p for p in problems if p.is_error] == []


def test_unknown_keys_ids_and_settings_are_errors_at_their_lines(fixture_kb):
    broken = (
        SOURCE.replace("reported_by: zhao2022decoupled", "reported_by: nobody2020")
        .replace("implementation: kd,", "implementation: kdx,")
        .replace(
            "paper: zhao2022decoupled, setting: cifar100-resnet32x4-resnet8x4",
            "paper: zhao2022decoupled, setting: cifar10-other",
        )
    )
    _write(fixture_kb, broken)
    errors = _errors(fixture_kb.root)
    path = f"{FOLDER}/dkd-readme.yaml"
    assert f"{path}:5: error: source.reported_by: bib key 'nobody2020' is not in bib/" in errors
    assert f"{path}:10: error: results: 'kdx' is not an implementation id" in errors
    assert f"{path}:11: error: results: setting 'cifar10-other' is not in settings.yaml" in errors


def test_the_same_method_and_setting_twice_in_one_source_is_an_error(fixture_kb):
    line = SOURCE.splitlines()[9]
    _write(fixture_kb, SOURCE + line.replace("73.33", "73.5") + "\n")
    assert any(
        "dkd-readme.yaml:12: error: results: kd in cifar100-resnet32x4-resnet8x4 is listed "
        "twice in this source (first as result 1)" in error
        for error in _errors(fixture_kb.root)
    )


def test_schema_errors_name_the_file_and_line(fixture_kb):
    _write(
        fixture_kb,
        SOURCE.replace("value: 73.33", "value: high").replace("  url: https", "  url: ftp"),
    )
    errors = "\n".join(_errors(fixture_kb.root))
    assert f"{FOLDER}/dkd-readme.yaml:10: error: results.0.value" in errors
    assert f"{FOLDER}/dkd-readme.yaml:3: error: source.url: source must be an http(s) URL" in errors


def test_numbers_without_the_settings_file_are_refused(fixture_kb):
    _write(fixture_kb, settings=None)
    assert (
        f"{FOLDER}/dkd-readme.yaml:1: error: settings.yaml is missing: the settings named here are defined nowhere"
        in _errors(fixture_kb.root)
    )


def test_the_committed_sources_load_and_hold_the_readme_numbers():
    kb, problems = load_with_problems(ROOT)
    assert [p for p in problems if p.is_error] == []
    repdistiller = kb.reported["reported:repdistiller"]
    assert "HobbitLong/RepDistiller/blob/" in repdistiller.source.url
    crd = {r.setting: r.value for r in repdistiller.results if r.implementation == "crd"}
    # the README's CRD row, spot-checked by hand against its table
    assert (
        crd["cifar100-resnet32x4-resnet8x4"] == 75.51 and crd["cifar100-wrn40-2-wrn16-2"] == 75.48
    )
    assert len(kb.reported) >= 5 and all(r.results for r in kb.reported.values())
