"""The static site: pages rendered from the knowledge base at build time.

``docs/gen_pages.py`` (run by mkdocs-gen-files) calls :func:`kdatlas.site.pages.generate`;
nothing it produces is committed. ``vendor`` brings KaTeX and Mermaid from the npm
registry once, so the built site loads no script, style or font from another host.
"""
