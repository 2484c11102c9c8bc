"""``kdatlas add``: new papers land in bib and taxonomy together, duplicates and bad entries are
refused with the existing entry named, and a failure before the final rename changes nothing."""

from __future__ import annotations

import pytest

import kdatlas.atomic
from kdatlas.add import AddError, Target, add_paper, entry_from_bibtex
from kdatlas.loader import Membership, load

ATTENTION = [
    "--title",
    "Paying More Attention to Attention",
    "--year",
    "2017",
    "--url",
    "https://arxiv.org/abs/1612.03928",
    "--author",
    "Sergey Zagoruyko",
    "--author",
    "Nikos Komodakis",
    "--venue",
    "ICLR 2017",
    "--code",
    "https://github.com/szagoruyko/attention-transfer",
]

SNIPPET = """\
@inproceedings{park2019relational,
  title = {Relational Knowledge Distillation},
  author = {Park, Wonpyo and Kim, Dongju and Lu, Yan and Cho, Minsu},
  booktitle = {CVPR},
  year = {2019},
  url = {https://arxiv.org/abs/1904.05068},
}
"""


def test_add_from_fields_then_check_passes(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", *ATTENTION)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "added zagoruyko2017paying under sources/feature",
        "wrote taxonomy/sources.yaml",
        "wrote bib/kd.bib",
    ]
    assert fixture_kb.read("bib/kd.bib") == fixture_kb.BIB.replace(
        "\n@inproceedings{zhao2022decoupled",
        "\n@inproceedings{zagoruyko2017paying,\n"
        "  title = {Paying More Attention to Attention},\n"
        "  author = {Sergey Zagoruyko and Nikos Komodakis},\n"
        "  booktitle = {ICLR},\n"
        "  year = {2017},\n"
        "  url = {https://arxiv.org/abs/1612.03928},\n"
        "  code = {https://github.com/szagoruyko/attention-transfer},\n"
        "  eprint = {1612.03928},\n"
        "  archiveprefix = {arXiv},\n"
        "}\n"
        "\n@inproceedings{zhao2022decoupled",
    )
    assert fixture_kb.read("taxonomy/sources.yaml").endswith(
        "    papers:\n      - romero2015fitnets\n      - zagoruyko2017paying\n"
    )
    assert "# the original" in fixture_kb.read("taxonomy/sources.yaml")
    assert run_cli(fixture_kb.root, "check").exit_code == 0
    assert run_cli(fixture_kb.root, "fmt", "--check").exit_code == 0


def test_add_snippet_from_stdin_to_a_topic_and_a_leaf(fixture_kb, run_cli):
    result = run_cli(
        fixture_kb.root,
        "add",
        "--to",
        "sources/logit/calibration",
        "--to",
        "algorithms/attention",
        input=SNIPPET,
    )
    assert result.exit_code == 0, result.output
    kb = load(fixture_kb.root)
    assert kb.entries["park2019relational"].fields["booktitle"] == "CVPR"
    assert kb.memberships("park2019relational") == [
        Membership("sources", "logit", "calibration"),
        Membership("algorithms", "attention", None),
    ]
    assert run_cli(fixture_kb.root, "check").exit_code == 0


def test_add_snippet_from_file(fixture_kb, run_cli, tmp_path):
    snippet = tmp_path / "new.bib"
    snippet.write_text(SNIPPET, encoding="utf-8")
    result = run_cli(fixture_kb.root, "add", "--to", "schemes/offline", "--bib", str(snippet))
    assert result.exit_code == 0, result.output
    assert load(fixture_kb.root).leaf("schemes", "offline").papers[-1] == "park2019relational"


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (
            [],
            SNIPPET.replace("park2019relational", "hinton2015distilling"),
            "<stdin>:1: error: key 'hinton2015distilling' already exists at bib/kd.bib:1",
        ),
        (
            [
                "--title",
                "Decoupled knowledge distillation",
                "--year",
                "2022",
                "--url",
                "https://example.org/dkd",
            ],
            None,
            "<arguments>: error: already in the bibliography as 'zhao2022decoupled' "
            "(bib/kd.bib:27): same title; add 'zhao2022decoupled' to the taxonomy instead",
        ),
        (
            [
                "--title",
                "Dark Knowledge",
                "--year",
                "2015",
                "--url",
                "https://arxiv.org/pdf/1503.02531v1",
            ],
            None,
            "<arguments>: error: already in the bibliography as 'hinton2015distilling' "
            "(bib/kd.bib:1): same arXiv id",
        ),
        (
            [
                "--title",
                "Standardised Logits",
                "--year",
                "2024",
                "--url",
                "https://example.org/x",
                "--doi",
                "10.1109/CVPR52733.2024.01489",
            ],
            None,
            "<arguments>: error: already in the bibliography as 'sun2024logit' "
            "(bib/kd.bib:19): same DOI",
        ),
        (
            ["--title", "A Paper", "--year", "2020", "--url", "javascript:alert(1)"],
            None,
            "<arguments>: error: paper2020: field 'url' must be an http(s) URL",
        ),
        (
            ["--title", "A Paper", "--year", "2020"],
            None,
            "<arguments>: error: paper2020: missing required field 'url'",
        ),
        (
            [],
            SNIPPET.replace("{Relational", "{<b>Relational</b>"),
            "<stdin>:1: error: park2019relational: field 'title' holds HTML markup",
        ),
        (
            [],
            SNIPPET.replace("{Relational Knowledge Distillation}", "{Relational"),
            "<stdin>:1: error: BibTeX syntax error",
        ),
        (
            [],
            SNIPPET + SNIPPET.replace("park2019", "other2019"),
            "<stdin>: error: expected one BibTeX entry, found 2",
        ),
    ],
    ids=[
        "same-key",
        "same-title",
        "same-arxiv",
        "same-doi",
        "javascript-url",
        "missing-url",
        "html-title",
        "syntax",
        "two-entries",
    ],
)
def test_add_refuses_and_changes_nothing(fixture_kb, run_cli, args, stdin, expected):
    before = fixture_kb.snapshot()
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", *args, input=stdin)
    assert result.exit_code == 1, result.output
    assert any(line.startswith(expected) for line in result.output.splitlines()), result.output
    assert "Traceback" not in result.output
    assert fixture_kb.snapshot() == before


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("sources/nope", "taxonomy/sources.yaml: error: area 'sources' has no leaf 'nope'"),
        ("sources/logit/nope", "taxonomy/sources.yaml: error: leaf 'logit' has no topic 'nope'"),
        ("nowhere/logit", "taxonomy/nowhere.yaml: error: no area 'nowhere'"),
        ("logit", "--to: error: 'logit' is not area/leaf or area/leaf/topic"),
    ],
)
def test_add_refuses_unknown_targets(fixture_kb, run_cli, target, expected):
    before = fixture_kb.snapshot()
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", "--to", target, *ATTENTION)
    assert result.exit_code == 1
    assert expected in result.output
    assert fixture_kb.snapshot() == before


def test_add_needs_one_source_of_the_entry(fixture_kb, run_cli, tmp_path):
    result = run_cli(
        fixture_kb.root,
        "add",
        "--to",
        "sources/feature",
        "--bib",
        str(tmp_path / "x.bib"),
        *ATTENTION,
    )
    assert result.exit_code == 2
    assert "either --bib or --title" in result.output


@pytest.mark.parametrize("failing_write", [1, 2])
def test_add_is_atomic_under_an_injected_failure(fixture_kb, monkeypatch, failing_write):
    """The second target file (or the first) fails to write: nothing changes, no temp file stays."""
    real_write = kdatlas.atomic._write_temporary
    calls = []

    def flaky_write(path, text):
        calls.append(path)
        if len(calls) == failing_write:
            raise OSError(28, "No space left on device")
        return real_write(path, text)

    monkeypatch.setattr(kdatlas.atomic, "_write_temporary", flaky_write)
    before = fixture_kb.snapshot()
    entry = entry_from_bibtex(SNIPPET, fixture_kb.root / "new.bib")
    targets = [Target.parse("sources/logit"), Target.parse("schemes/offline")]
    with pytest.raises(OSError, match="No space left"):
        add_paper(fixture_kb.root, entry, targets)
    assert len(calls) == failing_write
    assert fixture_kb.snapshot() == before  # also proves no .tmp file was left behind

    monkeypatch.setattr(kdatlas.atomic, "_write_temporary", real_write)
    result = add_paper(fixture_kb.root, entry, targets)
    assert [p.as_posix() for p in result.files] == [
        "taxonomy/sources.yaml",
        "taxonomy/schemes.yaml",
        "bib/kd.bib",
    ]
    assert len(fixture_kb.snapshot()) == len(before)


def test_add_error_type_carries_problems(fixture_kb):
    entry = entry_from_bibtex(SNIPPET, fixture_kb.root / "new.bib")
    with pytest.raises(AddError) as raised:
        add_paper(fixture_kb.root, entry, [])
    assert "at least one leaf" in str(raised.value)


# --------------------------------------------------------------------------- issue 8 regressions

SCHOLAR_ARXIV = """\
@article{tian2019contrastive,
  title={Contrastive representation distillation},
  author={Tian, Yonglong and Krishnan, Dilip and Isola, Phillip},
  journal={arXiv preprint arXiv:1910.10699},
  year={2019}
}
"""

SCHOLAR_AAAI = """\
@inproceedings{mirzadeh2020improved,
  title={Improved knowledge distillation via teacher assistant},
  author={Mirzadeh, Seyed Iman and Farajtabar, Mehrdad and Li, Ang},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  volume={34},
  number={04},
  pages={5191--5198},
  year={2020},
  doi={10.1609/aaai.v34i04.5963}
}
"""

DBLP = r"""@inproceedings{DBLP:conf/cvpr/ParkKLC19,
  author       = {Wonpyo Park and Dongju Kim and Yan Lu and Minsu Cho},
  title        = {Relational Knowledge Distillation},
  booktitle    = {{IEEE} Conference on Computer Vision and Pattern Recognition, {CVPR} 2019,
                  Long Beach, CA, USA, June 16-20, 2019},
  pages        = {3967--3976},
  publisher    = {Computer Vision Foundation / {IEEE}},
  year         = {2019},
  url          = {http://openaccess.thecvf.com/content\_CVPR\_2019/html/Park\_Relational\_Knowledge\_Distillation\_CVPR\_2019\_paper.html},
  doi          = {10.1109/CVPR.2019.00409},
  timestamp    = {Mon, 30 Aug 2021 17:01:14 +0200},
  biburl       = {https://dblp.org/rec/conf/cvpr/ParkKLC19.bib},
  bibsource    = {dblp computer science bibliography, https://dblp.org}
}
"""


def _added(fixture_kb, key):
    return load(fixture_kb.root).entries[key].fields


def test_add_scholar_snippet_without_url_takes_the_arxiv_id(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", input=SCHOLAR_ARXIV)
    assert result.exit_code == 0, result.output
    fields = _added(fixture_kb, "tian2019contrastive")
    assert fields["url"] == "https://arxiv.org/abs/1910.10699"
    assert (fields["eprint"], fields["archiveprefix"]) == ("1910.10699", "arXiv")
    assert fields["journal"] == "arXiv preprint"
    assert "url https://arxiv.org/abs/1910.10699 made from the arXiv id" in result.output
    assert run_cli(fixture_kb.root, "check").exit_code == 0


def test_add_scholar_snippet_without_url_takes_the_doi_and_normalises_the_venue(
    fixture_kb, run_cli
):
    result = run_cli(fixture_kb.root, "add", "--to", "sources/logit", input=SCHOLAR_AAAI)
    assert result.exit_code == 0, result.output
    entry = load(fixture_kb.root).entries["mirzadeh2020improved"]
    assert entry.fields["url"] == "https://doi.org/10.1609/aaai.v34i04.5963"
    assert (entry.entry_type, entry.fields["booktitle"]) == ("inproceedings", "AAAI")
    assert (
        "booktitle 'Proceedings of the AAAI Conference on Artificial Intelligence' -> 'AAAI'"
        in result.output
    )


def test_add_dblp_snippet_gets_a_house_key(fixture_kb, run_cli):
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", input=DBLP)
    assert result.exit_code == 0, result.output
    assert "note: key 'DBLP:conf/cvpr/ParkKLC19' rewritten to 'park2019relational'" in result.output
    assert "added park2019relational under sources/feature" in result.output
    fields = _added(fixture_kb, "park2019relational")
    assert fields["booktitle"] == "CVPR"
    assert fields["url"] == (
        "http://openaccess.thecvf.com/content_CVPR_2019/html/"
        "Park_Relational_Knowledge_Distillation_CVPR_2019_paper.html"
    )
    assert not {"timestamp", "biburl", "bibsource"} & set(fields)
    assert load(fixture_kb.root).leaf("sources", "feature").papers[-1] == "park2019relational"
    assert run_cli(fixture_kb.root, "check").exit_code == 0


def test_add_refuses_url_option_with_a_snippet_on_stdin(fixture_kb, run_cli):
    before = fixture_kb.snapshot()
    result = run_cli(
        fixture_kb.root,
        "add",
        "--to",
        "sources/feature",
        "--url",
        "https://example.org/rkd",
        input=SNIPPET,
    )
    assert result.exit_code == 2, result.output
    assert "a BibTeX entry on stdin and --title/--year/--url" in result.output
    assert fixture_kb.snapshot() == before


def test_add_reports_a_missing_comma_not_a_missing_field(fixture_kb, run_cli):
    before = fixture_kb.snapshot()
    broken = SNIPPET.replace("booktitle = {CVPR},", "booktitle = {CVPR}")
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", input=broken)
    assert result.exit_code == 1
    assert result.output.startswith("<stdin>:4: error: BibTeX syntax error"), result.output
    assert "missing comma" in result.output
    assert "missing required field" not in result.output
    assert fixture_kb.snapshot() == before


def test_add_greek_titles_are_different_papers(fixture_kb, run_cli):
    for letter in ("β", "α"):
        result = run_cli(
            fixture_kb.root,
            "add",
            "--to",
            "sources/logit",
            "--title",
            f"{letter}-Divergence Knowledge Distillation",
            "--year",
            "2024",
            "--url",
            f"https://example.org/{letter}",
        )
        assert result.exit_code == 0, result.output
    titles = {e.fields["title"] for e in load(fixture_kb.root).entries.values()}
    assert {"α-Divergence Knowledge Distillation", "β-Divergence Knowledge Distillation"} <= titles


def test_add_never_drops_free_text_of_the_bib_file(fixture_kb, run_cli):
    text = fixture_kb.BIB + "\nNotes for the logit leaf.\n"
    fixture_kb.write("bib/kd.bib", text)
    before = fixture_kb.snapshot()
    result = run_cli(fixture_kb.root, "add", "--to", "sources/feature", input=SNIPPET)
    assert result.exit_code == 1
    line = text.splitlines().index("Notes for the logit leaf.") + 1
    assert f"bib/kd.bib:{line}: error: 'Notes for the logit leaf.' is not an entry" in (
        result.output
    )
    assert fixture_kb.snapshot() == before


def test_a_url_made_from_the_doi_keeps_the_doi_as_written(fixture_kb, run_cli):
    snippet = SCHOLAR_AAAI.replace("10.1609/aaai.v34i04.5963", "10.1609/AAAI.v34i04.5963")
    assert snippet != SCHOLAR_AAAI
    result = run_cli(fixture_kb.root, "add", "--to", "sources/logit", input=snippet)
    assert result.exit_code == 0, result.output
    fields = _added(fixture_kb, "mirzadeh2020improved")
    assert fields["url"] == "https://doi.org/10.1609/AAAI.v34i04.5963"
