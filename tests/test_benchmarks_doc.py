"""BENCHMARKS.md keeps what was measured: every section stays (tests/benchmark_sections.txt lists them),
every script in benchmarks/ is named there, and every README link into it resolves."""

import os
import re

from oxnet.testing import REPO_ROOT, read_text

SECTIONS = os.path.join(REPO_ROOT, "tests", "benchmark_sections.txt")


def headings(markdown):
    """The ``##`` and ``###`` headings of a Markdown text, outside code blocks."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{2,3} ", line):
            out.append(line)
    return out


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def missing_sections(markdown, recorded):
    return [h for h in recorded if h not in headings(markdown)]


def unrecorded_sections(markdown, recorded):
    return [h for h in headings(markdown) if h not in recorded]


def unnamed_scripts(markdown, scripts):
    return [s for s in scripts if f"benchmarks/{s}" not in markdown]


def broken_links(readme, markdown):
    anchors = {anchor(h) for h in headings(markdown)}
    return [a for a in re.findall(r"BENCHMARKS\.md#([\w\-]+)", readme) if a not in anchors]


def _recorded():
    return [line for line in read_text(SECTIONS).splitlines() if line.strip() and not line.startswith("# ")]


def test_no_measured_section_is_lost():
    bench = read_text(os.path.join(REPO_ROOT, "BENCHMARKS.md"))
    assert missing_sections(bench, _recorded()) == [], (
        "BENCHMARKS.md lost a section: replace a measurement with a newer one, never drop it"
    )
    assert unrecorded_sections(bench, _recorded()) == [], (
        "add the new section to tests/benchmark_sections.txt"
    )


def test_every_benchmark_script_is_named_in_benchmarks_md():
    scripts = sorted(f for f in os.listdir(os.path.join(REPO_ROOT, "benchmarks")) if f.endswith(".py"))
    assert scripts
    assert unnamed_scripts(read_text(os.path.join(REPO_ROOT, "BENCHMARKS.md")), scripts) == []


def test_readme_links_into_benchmarks_md_resolve():
    readme = read_text(os.path.join(REPO_ROOT, "README.md"))
    assert "BENCHMARKS.md#" in readme
    assert broken_links(readme, read_text(os.path.join(REPO_ROOT, "BENCHMARKS.md"))) == []


def test_the_checks_see_a_lost_section_an_unnamed_script_and_a_broken_link():
    md = "# B\n\n## Speed (`benchmarks/a.py`)\n\n```\n## not a heading\n```\n\n"
    md += "### Mixed precision: bf16 vs. fp32\n"
    assert headings(md) == ["## Speed (`benchmarks/a.py`)", "### Mixed precision: bf16 vs. fp32"]
    assert anchor("### Mixed precision: bf16 vs. fp32") == "mixed-precision-bf16-vs-fp32"
    assert missing_sections(md, ["## Speed (`benchmarks/a.py`)", "## Deployed inference"]) == [
        "## Deployed inference"
    ]
    assert unnamed_scripts(md, ["a.py", "b.py"]) == ["b.py"]
    readme = "[x](BENCHMARKS.md#mixed-precision-bf16-vs-fp32) [y](BENCHMARKS.md#deployed-inference)"
    assert broken_links(readme, md) == ["deployed-inference"]
