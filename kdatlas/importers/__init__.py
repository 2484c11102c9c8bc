"""One-time migrations into the knowledge base, kept out of the tool's core.

``survey`` imported the paper lists of the survey (``bib/DATA_NOTES.md``); its
curated corrections are data, in ``survey.yaml``.
"""
