"""The survey import (a one-time migration, ``kdatlas/importers/survey.py``) on a small list
holding every kind of defect found in the survey's lists, into a skeleton taxonomy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdatlas.bibliography import BibEntry, read_bib_dir, render_bib
from kdatlas.importers.survey import ImportReport, ImportStopped, import_markdown
from kdatlas.loader import round_trip_yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE = FIXTURES / "seed_sample.md"
METADATA = FIXTURES / "seed_sample_metadata.tsv"

# The taxonomy the import fills: areas and the leaves the sample names, no papers yet.
SKELETON = {
    "sources": (
        "Distillation Sources",
        [
            ("logit", "Logit-based Distillation"),
            ("feature", "Feature-based Distillation"),
            ("similarity", "Similarity-based Distillation"),
        ],
    ),
    "schemes": (
        "Distillation Schemes",
        [
            ("offline", "Offline Distillation"),
            ("online", "Online Distillation"),
            ("self", "Self-Distillation"),
        ],
    ),
    "algorithms": ("Distillation Algorithms", [("attention", "Attention Distillation")]),
    "modalities": ("Distillation by Modalities", [("multi-view", "Multi-View")]),
    "applications": (
        "Applications of Distillation",
        [("foundation-models", "Foundation Models"), ("visual-recognition", "Visual Recognition")],
    ),
}


def _skeleton(root: Path) -> Path:
    for area_id, (title, leaves) in SKELETON.items():
        lines = [
            "# yaml-language-server: $schema=../kdatlas/schemas/taxonomy.schema.json",
            f"id: {area_id}",
            f"title: {title}",
            "summary: >-",
            f"  Summary to be written: {title}.",
            "leaves:",
        ]
        for leaf_id, leaf_title in leaves:
            lines += [
                f"  - id: {leaf_id}",
                f"    title: {leaf_title}",
                "    summary: >-",
                f"      Summary to be written: {leaf_title}.",
            ]
        path = root / "taxonomy" / f"{area_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _line_of(text: str) -> int:
    """1-based line of the fixture line containing ``text`` (so the fixture can be edited)."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def _run(root: Path, **options: object) -> ImportReport:
    if not (root / "taxonomy").exists():
        _skeleton(root)
    return import_markdown([SAMPLE], root=root, metadata=METADATA, **options)  # type: ignore[arg-type]


def _entries(root: Path) -> dict[str, BibEntry]:
    entries, problems = read_bib_dir(root / "bib")
    assert problems == []
    return {entry.key: entry for entry in entries}


def _leaf(root: Path, area: str, leaf_id: str) -> dict:
    data = round_trip_yaml().load((root / "taxonomy" / f"{area}.yaml").read_text())
    return next(leaf for leaf in data["leaves"] if leaf["id"] == leaf_id)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImportReport]:
    root = tmp_path_factory.mktemp("kb")
    return root, _run(root)


def test_counts_and_duplicates_merged(imported: tuple[Path, ImportReport]) -> None:
    root, report = imported
    entries = _entries(root)
    assert report.listings == 19  # every paper bullet, not the sub-heading bullets
    assert report.papers == len(entries) == 17  # TAKD x2 and Knowledge Diffusion x2 merged
    assert sorted(report.entries_added) == sorted(entries)
    assert "clip" not in " ".join(entries)  # bold-only bullets are topics, never entries


def test_unparsable_lines_reported_with_file_and_line(imported: tuple[Path, ImportReport]) -> None:
    _, report = imported
    where = {(Path(str(p.path)).name, p.line) for p in report.not_understood}
    assert where == {
        ("seed_sample.md", _line_of("this line is not a paper")),
        ("seed_sample.md", _line_of("A paper with a broken bullet")),
    }


def test_venue_spellings_normalised(imported: tuple[Path, ImportReport]) -> None:
    entries = _entries(imported[0])
    assert entries["hinton2015distilling"].fields["journal"] == "arXiv preprint"  # "Arxiv"
    assert entries["hinton2015distilling"].entry_type == "article"
    ab = entries["heo2019knowledge"].fields  # "AAAI2019"
    assert (ab["booktitle"], ab["year"]) == ("AAAI", "2019")
    takd = entries["mirzadeh2020improved"].fields  # "AAAI Conf. Artif. Intell." and "AAAI"
    assert (takd["booktitle"], takd["year"]) == ("AAAI", "2020")
    assert entries["learning2017multiple"].fields["booktitle"] == "KDD"  # "SIGGKD"


def test_clearly_wrong_venues_and_years_corrected(imported: tuple[Path, ImportReport]) -> None:
    entries = _entries(imported[0])
    ddgsd = entries["xu2019data"]  # CVPR 2019 in the list, its DOI says AAAI
    assert (ddgsd.fields["booktitle"], ddgsd.fields["year"]) == ("AAAI", "2019")
    assert ddgsd.fields["doi"] == "10.1609/aaai.v33i01.33015565"
    assert (
        ddgsd.fields["title"] == "Data-Distortion Guided Self-Distillation for Deep Neural Networks"
    )
    assert entries["zhang2020self"].fields["year"] == "2020"  # NeurIPS 2019 in the list
    scpnet = next(e for e in entries.values() if e.fields["title"].startswith("SCPNet"))
    assert scpnet.fields["year"] == "2023"  # CVPR 2024 in the list, the CVF link says 2023
    subband = next(e for e in entries.values() if e.fields["title"].startswith("Sub-Band"))
    assert subband.fields["year"] == "2020"  # "arXiv 2005", arXiv id 2005.14435
    clip = next(e for e in entries.values() if e.fields["title"].startswith("Learning Transf"))
    assert clip.fields["booktitle"] == "ICML"  # "PMLR" is the publisher


def test_same_paper_different_years_keeps_the_first_unproven_listing(
    imported: tuple[Path, ImportReport],
) -> None:
    root, report = imported
    diffusion = next(
        e for e in _entries(root).values() if "Knowledge Diffusion" in e.fields["title"]
    )
    assert diffusion.fields["year"] == "2023"  # NeurIPS 2023 and NeurIPS 2024 both listed
    assert diffusion.fields["code"] == "https://github.com/hunto/DiffKD"  # from the 2nd listing
    assert any("Knowledge Diffusion" in d and "using NeurIPS 2023" in d for d in report.decisions)


def test_links_repaired(imported: tuple[Path, ImportReport]) -> None:
    entries = _entries(imported[0])
    assert entries["zhang2020self"].fields["code"] == (
        "https://github.com/ZhiluZhang123/neurips_2020_distillation"  # was neurips\_2020\_...
    )
    bev = next(e for e in entries.values() if e.fields["title"].startswith("Bevdistill"))
    assert bev.fields["url"] == "https://arxiv.org/abs/2211.09386"  # was a pdf link
    assert bev.fields["eprint"] == "2211.09386"
    structured = next(e for e in entries.values() if e.fields["title"].startswith("Structured"))
    assert structured.fields["url"] == "https://papers.bmvc2023.org/0339.pdf"  # tracking query
    strategies = next(e for e in entries.values() if e.fields["title"].startswith("Strategies"))
    assert "google.com" not in strategies.fields["url"]
    assert strategies.fields["booktitle"] == "CVPR Workshops"  # metadata.tsv is more specific


def test_link_copied_from_another_paper_dropped(imported: tuple[Path, ImportReport]) -> None:
    entries = _entries(imported[0])
    lgd = next(e for e in entries.values() if e.fields["title"].startswith("LGD"))
    assert "20083-0_4" not in lgd.fields["url"]
    assert lgd.fields["url"] == "https://arxiv.org/abs/2109.11496"  # from metadata.tsv
    assert "code" not in lgd.fields
    assert entries["yang2022masked"].fields["doi"] == "10.1007/978-3-031-20083-0_4"


def test_metadata_merged(imported: tuple[Path, ImportReport]) -> None:
    entries = _entries(imported[0])
    assert entries["hinton2015distilling"].fields["author"].startswith("Hinton, Geoffrey")
    assert entries["hinton2015distilling"].fields["year"] == "2015"  # the list wins over 2014
    assert entries["mirzadeh2020improved"].fields["eprint"] == "1902.03393"


def test_memberships_moves_and_topics(imported: tuple[Path, ImportReport]) -> None:
    root, _ = imported
    offline = _leaf(root, "schemes", "offline")
    online = _leaf(root, "schemes", "online")
    assert "mirzadeh2020improved" in offline["papers"]  # TAKD listed under Online
    assert "hinton2015distilling" in offline["papers"]  # the empty Offline section is filled
    assert "mirzadeh2020improved" not in online["papers"]
    assert online["papers"] == ["lan2018knowledge"]
    multi_view = _leaf(root, "modalities", "multi-view")  # heading "Multi-veiw"
    topic = multi_view["topics"][0]
    assert (topic["id"], topic["title"]) == ("3d-object-detection", "3D Object Detection")
    assert len(topic["papers"]) == 3  # the "####" sub-heading folds into its topic
    vlm = _leaf(root, "applications", "foundation-models")["topics"]
    assert [t["id"] for t in vlm] == ["vision-language-models"]
    assert len(vlm[0]["papers"]) == 2  # bold sub-heading bullets are not papers
    assert _leaf(root, "applications", "visual-recognition")["topics"][0]["id"] == (
        "object-detection"
    )


def test_reimport_is_idempotent_and_keeps_hand_edits(tmp_path: Path) -> None:
    _run(tmp_path)
    schemes = tmp_path / "taxonomy" / "schemes.yaml"
    text = schemes.read_text()
    assert text.startswith(
        "# yaml-language-server: $schema=../kdatlas/schemas/taxonomy.schema.json"
    )
    hand = text.replace(
        "  - id: online\n", "  # curated by hand: keep this comment\n  - id: online\n", 1
    ).replace(
        "Summary to be written: Online Distillation.", "Students and teachers learn together."
    )
    schemes.write_text(hand)
    bib = tmp_path / "bib" / "kd.bib"
    entries = list(_entries(tmp_path).values())
    edited = [
        BibEntry(e.key, e.entry_type, {**e.fields, "note": "checked by hand"})
        if e.key == "lan2018knowledge"
        else e
        for e in entries
    ]
    bib.write_text(render_bib(edited))
    before = {path: path.read_text() for path in [*tmp_path.rglob("*.yaml"), bib]}

    second = _run(tmp_path)

    assert second.entries_added == [] and second.memberships_added == []
    assert {path: path.read_text() for path in before} == before  # byte for byte
    assert second.files_written == []


def test_new_memberships_appended_existing_entries_win(tmp_path: Path) -> None:
    _run(tmp_path)
    bib = tmp_path / "bib" / "kd.bib"
    entries = _entries(tmp_path)
    kept = entries["hinton2015distilling"]
    entries["hinton2015distilling"] = BibEntry(
        kept.key,
        kept.entry_type,
        {**kept.fields, "code": "https://github.com/hand/edited", "note": "checked by hand"},
    )
    del entries["lan2018knowledge"]  # a paper removed from the bib is added again ...
    bib.write_text(render_bib(entries.values()))
    online = tmp_path / "taxonomy" / "schemes.yaml"
    online.write_text(online.read_text().replace("      - lan2018knowledge\n", "", 1))

    report = _run(tmp_path)

    assert report.entries_added == ["lan2018knowledge"]
    assert ("schemes/online", None, "lan2018knowledge") in report.memberships_added
    assert (
        _entries(tmp_path)["hinton2015distilling"].fields == entries["hinton2015distilling"].fields
    )


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    before = {p: p.read_text() for p in _skeleton(tmp_path).rglob("*.yaml")}
    report = _run(tmp_path, dry_run=True)
    assert report.entries_added and report.memberships_added
    assert {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_leaves_come_from_the_taxonomy(tmp_path: Path) -> None:
    """The import repeats no table of areas and leaves: it files under the taxonomy's leaves,
    and refuses to run without the taxonomy, writing nothing."""
    with pytest.raises(ImportStopped, match=r"sources\.yaml: missing"):
        import_markdown([SAMPLE], root=tmp_path / "empty", metadata=METADATA)
    assert not (tmp_path / "empty").exists()
    root = _skeleton(tmp_path / "renamed")
    schemes = root / "taxonomy" / "schemes.yaml"
    schemes.write_text(
        schemes.read_text().replace("title: Self-Distillation", "title: Own Teacher")
    )
    report = _run(root)
    assert any(
        "'Self-Distillation' names no leaf of schemes" in str(p) for p in report.not_understood
    )
    assert "papers" not in _leaf(root, "schemes", "self")  # nothing filed under a guessed leaf


def test_curated_corrections_are_data() -> None:
    from kdatlas.importers.survey import DATA_FILE, curated

    assert DATA_FILE.name == "survey.yaml" and DATA_FILE.is_file()
    data = curated()
    assert data.keys["zhang2019your"].startswith("Be Your Own Teacher")
    assert {move[1:3] for move in data.moves} == {("schemes/online", "schemes/offline")}


def test_command_line(tmp_path: Path) -> None:
    from kdatlas.cli import app

    shutil.copy(SAMPLE, tmp_path / "list.md")
    _skeleton(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "import-markdown",
            str(tmp_path / "list.md"),
            "--metadata",
            str(METADATA),
            "--root",
            str(tmp_path),
            "--map",
            "Multi-veiw=modalities/multi-view",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "entries added: 17" in result.output
    assert f"list.md:{_line_of('this line is not a paper')}" in result.output
    assert (tmp_path / "bib" / "kd.bib").exists()
    bad = CliRunner().invoke(app, ["import-markdown", str(SAMPLE), "--map", "no-equals-sign"])
    assert bad.exit_code != 0
