#!/usr/bin/env python3
"""Renders Markdown from stdin as GitHub does (cmark-gfm with the table,
autolink, strikethrough, tag filter and task list extensions, through the
`cmarkgfm` package) and checks that nothing in it became a link, raw HTML or
a heading of its own: no `<a`, only the tags a table report uses, as many
headings as lines the tool starts with `#`, and every table row with as many
cells as its header. Prints what it found wrong and exits 1; exits 2 when
`cmarkgfm` is missing (`python3 -m pip install cmarkgfm==2025.10.22`)."""

import re
import sys

try:
    import cmarkgfm
except ImportError:
    print("the Python package cmarkgfm is missing: "
          "python3 -m pip install cmarkgfm==2025.10.22", file=sys.stderr)
    sys.exit(2)

# The tags a report's Markdown renders to.
ALLOWED = {"h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td",
           "ul", "li", "strong", "em", "code", "br"}

markdown = sys.stdin.read()
html = cmarkgfm.github_flavored_markdown_to_html(markdown)
problems = []

if "<a" in html:
    problems.append("a link: " + ", ".join(re.findall(r"<a [^>]*>", html)))
tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", html))
if tags - ALLOWED:
    problems.append("HTML tags: " + ", ".join(sorted(tags - ALLOWED)))
headings = len(re.findall(r"<h[1-6][ >]", html))
own = sum(1 for line in markdown.splitlines() if line.startswith("#"))
if headings != own:
    problems.append(f"{headings} headings for {own} heading lines")
for table in re.findall(r"<table>.*?</table>", html, re.S):
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    widths = [len(re.findall(r"<t[hd][ >]", row)) for row in rows]
    if len(set(widths)) > 1:
        problems.append(f"table rows of {widths} cells")
    if len(rows) != table.count("<tr>"):
        problems.append("a row inside a row")

for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    print(html, file=sys.stderr)
    sys.exit(1)
print(f"ok: {headings} headings, {html.count('<table>')} tables, no link")
