"""``kdatlas fmt``: one canonical form, idempotent, comments kept, ``--check`` changes nothing."""

from __future__ import annotations

from kdatlas.loader import load

MESSY_SOURCES = """\
title: Distillation Sources   # the title
id: sources
summary: >-
  Where in the teacher the knowledge is taken from.
leaves:
    - papers: [hinton2015distilling, zhao2022decoupled]   # flow list
      id: logit
      title: Logit-based Distillation
      summary: "Match the softened output distributions of teacher and student."
      notebook: docs/notebooks/sources/logit.py
      topics:
      - id: calibration
        summary: Logit methods that rescale or standardise the logits.
        title: Calibration
        papers: [sun2024logit]
      implementations:
      - {id: kd, title: "KD (Hinton et al., 2015)", object: "PKG.losses:KDLoss", papers: [hinton2015distilling]}
    # a comment between leaves
    - id: feature
      title: 'Feature-based Distillation'
      summary: >-
        Match intermediate feature maps
        through small connectors.
      papers:
      - romero2015fitnets
"""

MESSY_BIB = """\
@InProceedings{zhao2022decoupled,
\tbooktitle={CVPR},
\tauthor = "Zhao, Borui and Cui, Quan and Song, Renjie and Qiu, Yiyu and Liang, Jiajun",
\ttitle = {Decoupled Knowledge Distillation},
\turl = {https://arxiv.org/abs/2203.08679},
\tyear = 2022,
\tcode = {https://github.com/megvii-research/mdistiller},
\tarchivePrefix = {arXiv}, eprint = {2203.08679}
}
@inproceedings{sun2024logit,
  doi = {10.1109/CVPR52733.2024.01489},
  title = {Logit Standardization in Knowledge Distillation},
  booktitle = {CVPR}, year = {2024},
  url = {https://openaccess.thecvf.com/sun2024},
}
@inproceedings{romero2015fitnets,
  author = {Romero, Adriana and Ballas, Nicolas},
  title = {FitNets: Hints for Thin Deep Nets},
  booktitle = {ICLR},
  year = {2015},
  url = {https://arxiv.org/abs/1412.6550}}
@article{hinton2015distilling,
  title = {Distilling the Knowledge in a Neural Network},
  author = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
  journal = {arXiv preprint},
  year = {2015},
  url = {https://arxiv.org/abs/1503.02531},
  eprint = {1503.02531},
  archiveprefix = {arXiv},
}
"""


def test_canonical_fixture_is_left_alone(fixture_kb, run_cli):
    before = fixture_kb.snapshot()
    for args in (("fmt", "--check"), ("fmt",)):
        result = run_cli(fixture_kb.root, *args)
        assert result.exit_code == 0, result.output
        assert result.output == ""
    assert fixture_kb.snapshot() == before


def test_yaml_canonical_form_keeps_comments_and_meaning(fixture_kb, run_cli):
    fixture_kb.write("taxonomy/sources.yaml", MESSY_SOURCES.replace("PKG", fixture_kb.package))
    meaning = load(fixture_kb.root).areas

    checked = run_cli(fixture_kb.root, "fmt", "--check")
    assert checked.exit_code == 1
    assert checked.output == "would reformat taxonomy/sources.yaml\n"
    assert fixture_kb.read("taxonomy/sources.yaml").startswith("title: Distillation Sources")

    result = run_cli(fixture_kb.root, "fmt")
    assert result.exit_code == 0
    assert result.output == "reformatted taxonomy/sources.yaml\n"
    text = fixture_kb.read("taxonomy/sources.yaml")
    assert text.startswith(
        fixture_kb.HEADER + "id: sources\ntitle: Distillation Sources   # the title\n"
    )
    for comment in ("# the title", "# flow list", "# a comment between leaves"):
        assert comment in text
    assert "[" not in text and "{" not in text  # block style everywhere
    assert "  - id: logit\n    title: Logit-based Distillation\n" in text  # 2-space, items indented
    assert "      - id: calibration\n        title: Calibration\n        summary:" in text
    assert "        object: " + fixture_kb.package + ".losses:KDLoss\n" in text
    assert "      Match intermediate feature maps\n      through small connectors.\n" in text
    assert load(fixture_kb.root).areas == meaning

    # Idempotent: a second run changes nothing, byte for byte.
    again = run_cli(fixture_kb.root, "fmt")
    assert again.exit_code == 0 and again.output == ""
    assert fixture_kb.read("taxonomy/sources.yaml") == text
    assert run_cli(fixture_kb.root, "fmt", "--check").exit_code == 0


def test_schema_comment_is_added_and_corrected(fixture_kb, run_cli):
    body = fixture_kb.read("taxonomy/schemes.yaml").removeprefix(fixture_kb.HEADER)
    fixture_kb.write("taxonomy/schemes.yaml", body)
    fixture_kb.write(
        "taxonomy/modalities.yaml",
        "# yaml-language-server: $schema=old.json\n"
        + fixture_kb.read("taxonomy/modalities.yaml").removeprefix(fixture_kb.HEADER),
    )
    result = run_cli(fixture_kb.root, "fmt")
    assert result.exit_code == 0
    assert fixture_kb.read("taxonomy/schemes.yaml") == fixture_kb.HEADER + body
    assert fixture_kb.read("taxonomy/modalities.yaml").startswith(
        fixture_kb.HEADER + "id: modalities\n"
    )


def test_bib_canonical_form(fixture_kb, run_cli):
    fixture_kb.write("bib/kd.bib", MESSY_BIB)
    checked = run_cli(fixture_kb.root, "fmt", "--check")
    assert checked.exit_code == 1
    assert checked.output == "would reformat bib/kd.bib\n"
    assert fixture_kb.read("bib/kd.bib") == MESSY_BIB

    assert run_cli(fixture_kb.root, "fmt").exit_code == 0
    assert fixture_kb.read("bib/kd.bib") == fixture_kb.BIB
    assert run_cli(fixture_kb.root, "fmt").output == ""
    assert run_cli(fixture_kb.root, "check").exit_code == 0


def test_fmt_formats_what_parses_and_reports_the_rest(fixture_kb, run_cli):
    fixture_kb.write("taxonomy/sources.yaml", MESSY_SOURCES.replace("PKG", fixture_kb.package))
    fixture_kb.write("bib/kd.bib", MESSY_BIB.replace("{Decoupled Knowledge Distillation}", "{oops"))
    broken_bib = fixture_kb.read("bib/kd.bib")
    result = run_cli(fixture_kb.root, "fmt")
    assert result.exit_code == 1
    assert "bib/kd.bib:1: error: BibTeX syntax error" in result.output
    assert "reformatted taxonomy/sources.yaml" in result.output
    assert fixture_kb.read("bib/kd.bib") == broken_bib


def test_bib_comments_and_macros_are_never_dropped(fixture_kb, run_cli):
    text = "% papers of the logit leaf\n" + fixture_kb.BIB
    fixture_kb.write("bib/kd.bib", text)
    result = run_cli(fixture_kb.root, "fmt")
    assert result.exit_code == 1
    assert result.output.startswith(
        "bib/kd.bib:1: error: '% papers of the logit leaf' is not an entry"
    )
    assert fixture_kb.read("bib/kd.bib") == text


def test_free_text_between_entries_is_never_dropped(fixture_kb, run_cli):
    """bibtexparser reads a line between entries as an implicit comment; fmt used to drop it."""
    text = fixture_kb.BIB.replace(
        "\n@inproceedings{romero2015fitnets",
        "\nThe feature papers start here.\n@inproceedings{romero2015fitnets",
    )
    fixture_kb.write("bib/kd.bib", text)
    line = text.splitlines().index("The feature papers start here.") + 1
    for args in (("fmt", "--check"), ("fmt",)):
        result = run_cli(fixture_kb.root, *args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(
            f"bib/kd.bib:{line}: error: 'The feature papers start here.' is not an entry"
        )
        assert fixture_kb.read("bib/kd.bib") == text
