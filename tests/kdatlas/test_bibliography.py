"""The BibTeX module: parsing, canonical rendering, keys, titles, venues and display."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdatlas.bibliography import (
    BibEntry,
    arxiv_id,
    author_names,
    display,
    doi,
    entry_to_bibtex,
    make_key,
    normalise_title,
    normalise_venue,
    parse_bib,
    read_bib_dir,
    render_bib,
)

MESSY = r"""@InProceedings{zhao2022decoupled,
	Title = {Decoupled {K}nowledge Distillation},
	author = "Zhao, Borui and Cui, Quan and others",
	booktitle={CVPR},
  year = 2022,
  url = {https://arxiv.org/abs/2203.08679},
  code = {https://github.com/megvii-research/mdistiller},
  eprint = {2203.08679}, archiveprefix = {arXiv},
  note = {Sch{\"o}lkopf \& co -- 50\% off},
  zzz_custom = {kept},
  abstract = {An {\em abstract}.},
}

@article{hinton2015distilling,
  title = {Distilling the Knowledge in a Neural Network},
  author = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
  journal = {arXiv preprint},
  year = {2015},
  doi = {10.48550/arXiv.1503.02531},
}
"""


def test_parse_keeps_every_field_raw() -> None:
    entries, problems = parse_bib(MESSY, Path("x.bib"))
    assert problems == []
    dkd = entries[0]
    assert (dkd.key, dkd.entry_type, dkd.line) == ("zhao2022decoupled", "inproceedings", 1)
    assert dkd.fields["title"] == "Decoupled {K}nowledge Distillation"  # LaTeX kept
    assert dkd.fields["author"] == "Zhao, Borui and Cui, Quan and others"  # quotes removed
    assert dkd.fields["year"] == "2022"
    assert set(dkd.fields) == {
        "title",
        "author",
        "booktitle",
        "year",
        "url",
        "code",
        "eprint",
        "archiveprefix",
        "note",
        "zzz_custom",
        "abstract",
    }
    assert entries[1].line == 14


def test_round_trip_keeps_every_field_and_is_byte_identical() -> None:
    entries, _ = parse_bib(MESSY, Path("x.bib"))
    canonical = render_bib(entries)
    again, problems = parse_bib(canonical, Path("y.bib"))
    assert problems == []
    assert [(e.key, e.entry_type, e.fields) for e in again] == [
        (e.key, e.entry_type, e.fields) for e in sorted(entries, key=lambda e: e.key)
    ]
    assert render_bib(again) == canonical  # idempotent, byte for byte


def test_canonical_layout() -> None:
    entries, _ = parse_bib(MESSY, Path("x.bib"))
    text = render_bib(entries)
    assert text.endswith("}\n")
    assert text.index("@article{hinton2015distilling") < text.index("@inproceedings{zhao")
    assert "}\n\n@inproceedings" in text  # one blank line between entries
    dkd = entry_to_bibtex(entries[0]).splitlines()
    names = [line.split("=")[0].strip() for line in dkd[1:-1]]
    assert names == [
        "title",
        "author",
        "booktitle",
        "year",
        "note",
        "url",
        "code",
        "eprint",
        "archiveprefix",
        "abstract",
        "zzz_custom",
    ]
    assert dkd[1] == "  title = {Decoupled {K}nowledge Distillation},"


def test_syntax_errors_and_duplicates_are_problems_with_lines() -> None:
    text = "@misc{a1, title={one}}\n\n@misc{a1, title={two}}\n@misc{bad, title={open}\n"
    entries, problems = parse_bib(text, Path("p.bib"))
    assert [e.key for e in entries] == ["a1"]
    found = {(p.line, p.message.split(" ")[0]) for p in problems}
    assert (3, "duplicate") in found
    assert any(p.line == 4 and "syntax" in p.message for p in problems)
    assert all(p.is_error for p in problems)


def test_read_bib_dir_sorted_and_duplicates_across_files(tmp_path: Path) -> None:
    (tmp_path / "b.bib").write_text("@misc{k1, title={from b}}\n")
    (tmp_path / "a.bib").write_text("@misc{k2, title={from a}}\n\n@misc{k1, title={from a}}\n")
    entries, problems = read_bib_dir(tmp_path)
    assert [(e.key, e.path.name) for e in entries] == [("k2", "a.bib"), ("k1", "a.bib")]
    assert len(problems) == 1
    assert problems[0].path == tmp_path / "b.bib" and "a.bib:3" in problems[0].message


@pytest.mark.parametrize(
    ("authors", "year", "title", "expected"),
    [
        (
            "Hinton, Geoffrey and Vinyals, Oriol",
            2015,
            "Distilling the Knowledge in a NN",
            "hinton2015distilling",
        ),
        ("Zhang, Linfeng and Song, Jiebo", 2019, "Be Your Own Teacher: Improve", "zhang2019your"),
        (
            "Heo, Byeongho",
            "2019",
            "A Comprehensive Overhaul of Feature Distillation",
            "heo2019comprehensive",
        ),
        (
            "Zhang, Zhilu",
            2020,
            "Self-Distillation as Instance-Specific Label Smoothing",
            "zhang2020self",
        ),
        (
            "Kim, Kyungyul",
            2021,
            "Self-Knowledge Distillation with Progressive Refinement",
            "kim2021self",
        ),
        ('Sch{\\"o}lkopf, Bernhard', 2001, "Learning with Kernels", "scholkopf2001learning"),
        ("Geoffrey Hinton and others", 2015, "Distilling", "hinton2015distilling"),
        ("Nguyen-Duc, Thanh", 2023, "Adversarial Local Distribution", "nguyenduc2023adversarial"),
        (None, 2023, "Generalization Matters: Loss Minima", "generalization2023matters"),
        ("", 2018, "Self-Referenced Deep Learning", "self2018referenced"),
    ],
)
def test_make_key_scheme(authors: str | None, year: int | str, title: str, expected: str) -> None:
    assert make_key(authors, year, title, set()) == expected


def test_make_key_collisions_get_letters() -> None:
    taken = {"chen2021distilling"}
    first = make_key("Chen, A", 2021, "Distilling X", taken)
    taken.add(first)
    second = make_key("Chen, B", 2021, "Distilling Y", taken)
    assert (first, second) == ("chen2021distillingb", "chen2021distillingc")


def test_normalise_title() -> None:
    assert normalise_title("Diversity-preserved KnowledgeDistillation") == normalise_title(
        "Diversity-Preserved Knowledge Distillation"
    )
    assert normalise_title(r"{T}raining \& {D}istillation: “Think”") == "trainingdistillationthink"
    assert normalise_title("  Born   Again  ") == "bornagain"
    assert normalise_title("Relational KD") != normalise_title("Relational KD 2")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CVPR 2022", ("inproceedings", "booktitle", "CVPR")),
        ("Arxiv", ("article", "journal", "arXiv preprint")),
        ("arXive 2024", ("article", "journal", "arXiv preprint")),
        ("AAAI Conf. Artif. Intell. 2020", ("inproceedings", "booktitle", "AAAI")),
        ("AAAI2019", ("inproceedings", "booktitle", "AAAI")),
        ("SIGGKD 2017", ("inproceedings", "booktitle", "KDD")),
        ("NIPS 2017", ("inproceedings", "booktitle", "NeurIPS")),
        (
            "Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition",
            ("inproceedings", "booktitle", "CVPR"),
        ),
        ("CVPRW 2023", ("inproceedings", "booktitle", "CVPR Workshops")),
        ("ECCV Workshop 2024", ("inproceedings", "booktitle", "ECCV Workshops")),
        ("IEEE TPAMI 2019", ("article", "journal", "IEEE TPAMI")),
        ("T-MAPI 2022", ("article", "journal", "IEEE TPAMI")),
        ("Image and Video Computing 2024", ("article", "journal", "Image and Vision Computing")),
        ("Pattern Recognition Letters", ("article", "journal", "Pattern Recognition Letters")),
        ("EEE/RSJ IROS 2024", ("inproceedings", "booktitle", "IROS")),
        ("Some New Journal of Things 2024", ("article", "journal", "Some New Journal of Things")),
        (
            "International Conference on Things 2024",
            ("inproceedings", "booktitle", "International Conference on Things"),
        ),
        ("", ("misc", "howpublished", "")),
    ],
)
def test_normalise_venue(raw: str, expected: tuple[str, str, str]) -> None:
    assert normalise_venue(raw) == expected


def test_display_decodes_latex_only_for_display() -> None:
    assert display(r"Sch{\"o}lkopf \& {DKD} -- Part") == "Schölkopf & DKD – Part"
    assert display("Plain title") == "Plain title"


def test_author_names() -> None:
    entry = BibEntry(
        "k",
        "misc",
        {"author": r"Hinton, Geoffrey and Oriol Vinyals and {\"O}zt{\"u}rk, Ay and others"},
    )
    assert author_names(entry) == ["Geoffrey Hinton", "Oriol Vinyals", "Ay Öztürk", "et al."]
    braced = BibEntry(
        "k", "misc", {"author": "{Google Brain and Friends} and van der Maaten, Laurens"}
    )
    assert author_names(braced) == ["Google Brain and Friends", "Laurens van der Maaten"]
    assert author_names(BibEntry("k", "misc", {})) == []


def test_identifiers() -> None:
    by_eprint = BibEntry("k", "article", {"eprint": "2203.08679v2", "archiveprefix": "arXiv"})
    by_url = BibEntry("k", "article", {"url": "https://arxiv.org/pdf/1503.02531"})
    assert arxiv_id(by_eprint) == "2203.08679"
    assert arxiv_id(by_url) == "1503.02531"
    assert arxiv_id(BibEntry("k", "article", {"url": "https://example.org"})) is None
    assert doi(BibEntry("k", "a", {"doi": "10.1609/AAAI.v33i01.33015565"})) == (
        "10.1609/aaai.v33i01.33015565"
    )
    assert doi(BibEntry("k", "a", {"url": "https://doi.org/10.21437/Interspeech.2016-852"})) == (
        "10.21437/interspeech.2016-852"
    )
    assert doi(BibEntry("k", "a", {"url": "https://example.org/10.1/x"})) is None


# ---------------------------------------------------------------- issue 8 regressions


def test_normalise_title_keeps_greek_and_other_scripts() -> None:
    alpha = normalise_title("α-Divergence Knowledge Distillation")
    beta = normalise_title("β-Divergence Knowledge Distillation")
    assert alpha != beta  # they collided as "divergenceknowledgedistillation"
    assert alpha == normalise_title(r"$\alpha$-Divergence Knowledge {D}istillation")  # LaTeX
    assert alpha == normalise_title("Α-DIVERGENCE KNOWLEDGE DISTILLATION")  # casefolded
    assert normalise_title("知识蒸馏") != normalise_title("模型压缩")
    assert normalise_title(r"Sch{\"o}lkopf") == normalise_title("Schölkopf") == "scholkopf"
    assert normalise_title("ﬁne-tuning²") == "finetuning2"  # NFKD compatibility forms


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Proceedings of the AAAI Conference on Artificial Intelligence",
            ("inproceedings", "booktitle", "AAAI"),
        ),
        (  # DBLP's booktitle: braces, then place and dates after a comma
            "{IEEE/CVF} Conference on Computer Vision and Pattern Recognition, {CVPR} 2022, "
            "New Orleans, LA, USA, June 18-24, 2022",
            ("inproceedings", "booktitle", "CVPR"),
        ),
        ("{IEEE} Trans. Pattern Anal. Mach. Intell.", ("article", "journal", "IEEE TPAMI")),
        ("CoRR", ("article", "journal", "arXiv preprint")),
        ("arXiv preprint arXiv:1503.02531", ("article", "journal", "arXiv preprint")),
        ("arXiv preprint arXiv:2012.00123", ("article", "journal", "arXiv preprint")),
    ],
)
def test_normalise_venue_of_exported_snippets(raw: str, expected: tuple[str, str, str]) -> None:
    assert normalise_venue(raw) == expected


def test_venue_table_is_package_data() -> None:
    from importlib.resources import files

    from kdatlas.bibliography import venue_table

    text = (files("kdatlas") / "data" / "venues.yaml").read_text(encoding="utf-8")
    table = venue_table()
    assert "IEEE TPAMI" in text and any(venue.name == "IEEE TPAMI" for venue in table)
    assert all(venue.entry_type in ("inproceedings", "article", "misc") for venue in table)


def test_author_names_use_bibtex_name_rules() -> None:
    entry = BibEntry("k", "misc", {"author": "Hinton, Geoffrey AND King, Jr, Martin Luther"})
    assert author_names(entry) == ["Geoffrey Hinton", "Martin Luther King Jr"]
    assert make_key("van der Maaten, Laurens", 2008, "Visualizing Data", set()) == (
        "maaten2008visualizing"
    )
    assert make_key("Laurens van der Maaten", 2008, "Visualizing Data", set()) == (
        "maaten2008visualizing"
    )


def test_free_text_between_entries_is_a_problem_with_its_line() -> None:
    text = (
        "@misc{a2020one,\n  title = {One},\n}\n"  # 1-3
        "The logit papers follow.\n"  # 4
        "@misc{b2020two,\n  title = {Two},\n}\n"  # 5-7
        "% a comment\n"  # 8
        "@string{cvpr = {CVPR}}\n"  # 9
    )
    entries, problems = parse_bib(text, Path("p.bib"))
    assert [e.key for e in entries] == ["a2020one", "b2020two"]
    assert [(p.line, p.is_error) for p in problems] == [(4, True), (8, True), (9, True)]
    assert problems[0].message.startswith("'The logit papers follow.' is not an entry")


def test_missing_comma_is_a_syntax_error_on_its_line() -> None:
    text = (
        "@inproceedings{park2019relational,\n"  # 1
        "  title = {Relational Knowledge Distillation},\n"  # 2
        "  booktitle = {CVPR}\n"  # 3: the comma is missing
        "  year = {2019},\n"  # 4
        "}\n"
    )
    entries, problems = parse_bib(text, Path("p.bib"))
    assert entries == []
    assert [(p.line, p.is_error) for p in problems] == [(3, True)]
    assert "BibTeX syntax error" in problems[0].message
    assert "missing comma" in problems[0].message
    # A macro, a number or a concatenation is not a missing comma.
    fine = "@misc{a2020b,\n  month = jan,\n  year = 2020,\n  note = {a} # {b},\n}\n"
    assert parse_bib(fine, Path("q.bib"))[1] == []


def test_render_keeps_unknown_fields_and_quotes() -> None:
    entry = BibEntry(
        "k2020x", "Article", {"zeta": "z", "title": 'A "quoted" {T}itle', "alpha": "a"}
    )
    assert render_bib([entry]) == (
        '@article{k2020x,\n  title = {A "quoted" {T}itle},\n  alpha = {a},\n  zeta = {z},\n}\n'
    )
