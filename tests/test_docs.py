"""The README and the docs pages: the README stays short, and every relative link in them (files,
figures, `page.md#anchor`) resolves, so the front door never leads nowhere."""

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

README_MAX_BYTES = 12 * 1024
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchor(heading: str) -> str:
    """GitHub's rule: lowercase, punctuation removed (letters, digits, '_', '-' and spaces stay),
    spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """A page's heading anchors; a repeated heading gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        a = anchor(heading)
        out.add(f"{a}-{seen[a]}" if a in seen else a)
        seen[a] = seen.get(a, 0) + 1
    return out


def links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of `page` that lead nowhere, each as 'target: why'."""
    bad = []
    for target in links(page):
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        name = dest.relative_to(root.resolve()).as_posix() if dest.is_relative_to(
            root.resolve()) else str(dest)
        if not dest.exists():
            bad.append(f"{target}: no file {name}")
            continue
        if frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"{target}: no heading of {name} has the anchor #{frag}")
    return bad


def test_readme_is_at_most_12_kb():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move text to docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken(page) == []


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached or not page.exists():
            continue
        reached.add(page)
        todo += [(page.parent / t.partition("#")[0]).resolve() for t in links(page)
                 if t.partition("#")[0].endswith(".md")]
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in reached]
    assert orphans == []


def test_readme_links_the_page_for_each_goal():
    targets = {t.partition("#")[0] for t in links(ROOT / "README.md")}
    for page in ("running", "gpu", "ci", "speedup", "own-model", "forensics", "history",
                 "statistics", "results", "commands", "glossary", "environment"):
        assert f"docs/{page}.md" in targets


def test_anchor_follows_githubs_rule():
    assert anchor("What got slower: `imgbench explain`") == "what-got-slower-imgbench-explain"
    assert anchor("The gate's own error rates") == "the-gates-own-error-rates"
    assert (anchor("One-shot GPU check: `.ci/gpu-check OUTDIR`")
            == "one-shot-gpu-check-cigpu-check-outdir")


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Two words\n\n## Two words\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#two-words-1) [here](#top) [web](https://x.org/y) `[no](z.md)`\n"
                    "[gone](docs/b.md) [bad](docs/a.md#three) ![fig](docs/f.png)\n\n# Top\n"
                    "```\n[in code](c.md)\n```\n")
    assert broken(page, tmp_path) == [
        "docs/b.md: no file docs/b.md",
        "docs/a.md#three: no heading of docs/a.md has the anchor #three",
        "docs/f.png: no file docs/f.png",
    ]
