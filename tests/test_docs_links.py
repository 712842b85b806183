"""Every relative link in the user docs points at a file that exists (and a heading that exists).

Checks README.md, docs/*.md and benchmarks/README.md: inline links and images
(``[text](target)``, ``![alt](target)``) and reference definitions (``[name]: target``)
outside code. Web links (``https:`` etc.) are not fetched. A ``#anchor`` is checked against
the target Markdown file's headings, slugged as GitHub does; links to other file types are
checked for existence only. The same docs must not point outside the repository, except at
``../shared/data`` (the project's data, named in recipes).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_files() -> list[Path]:
    """The user-facing Markdown pages whose links are checked."""
    files = [REPO / "README.md", REPO / "benchmarks" / "README.md"]
    files += sorted((REPO / "docs").glob("*.md"))
    return [f for f in files if f.is_file()]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans removed."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0] * 3
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is None:
            out.append((number, re.sub(r"`+[^`]*`+", "", line)))
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link in ``text`` outside code."""
    found = []
    for number, line in prose_lines(text):
        found += [(number, m.group(1)) for m in INLINE.finditer(line)]
        ref = REFERENCE.match(line)
        if ref:
            found.append((number, ref.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links and markup dropped, lowercase, punctuation removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[*`]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file's headings define (duplicates get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path, repo: Path = REPO) -> list[str]:
    """Problems with ``page``'s relative links, one line each ('' list when all resolve)."""
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if SCHEME.match(target) or target.startswith("//"):
            continue
        where = f"{page.relative_to(repo)}:{number}: {target}"
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page.resolve()
        try:
            dest.relative_to(repo.resolve())
        except ValueError:
            problems.append(f"{where} points outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{where} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where} has no heading with anchor #{anchor}")
    return problems


def outside_paths(page: Path, repo: Path = REPO) -> list[str]:
    """Paths out of the repository in the page's text (commands run from the repository root).

    ``../shared/data`` (the project's data) is allowed; link targets are left to
    ``broken_links``, which resolves them from the page's own folder.
    """
    problems = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        text = re.sub(r"\]\([^)]*\)", "]()", line)
        for match in re.finditer(r"(?<![\w.~/])(?:\.\./)+\S*", text):
            if not re.match(r"\.\./shared/data(?![^/\s`'\")])", match.group(0)):
                problems.append(f"{page.relative_to(repo)}:{number}: {match.group(0)}")
        for match in re.finditer(r"(?<![\w.~:/])/(?:work|home|tmp|shared|root|mnt|data)/\S*", text):
            problems.append(f"{page.relative_to(repo)}:{number}: {match.group(0)}")
    return problems


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_paths_outside_the_repository(page):
    assert outside_paths(page) == []


def test_the_checked_pages_include_the_index_and_the_pages_it_names():
    names = {p.relative_to(REPO).as_posix() for p in doc_files()}
    assert {"README.md", "docs/index.md", "benchmarks/README.md", "docs/user-guide.md"} <= names
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    linked = {(REPO / "docs" / t.partition("#")[0]).resolve() for _, t in links(index)}
    unlinked = [p.name for p in (REPO / "docs").glob("*.md")
                if p.name != "index.md" and p.resolve() not in linked]
    assert unlinked == [], f"docs/index.md does not link {unlinked}"


def test_benchmarks_readme_lists_every_benchmark_script():
    readme = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    listed = {target.partition("#")[0] for _, target in links(readme)}
    scripts = {p.name for p in (REPO / "benchmarks").iterdir() if p.suffix in (".py", ".sh")}
    assert sorted(scripts - listed) == []


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Some section: here\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok anchor](other.md#some-section-here) [self](#page)\n"
        "[gone](missing.md) ![gone image](img/none.png)\n"
        "[bad anchor](other.md#no-such-heading) [web](https://example.org/x)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n"
        "[ref]: ../../outside.md\n"
    )
    problems = broken_links(page, repo=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "missing.md does not exist",
        "img/none.png does not exist",
        "other.md#no-such-heading has no heading with anchor #no-such-heading",
        "../../outside.md points outside the repository",
    ]


def test_slug_matches_github_anchors():
    assert slug("Do the transport plans explain anything? (plan ablation on ACDC)") == (
        "do-the-transport-plans-explain-anything-plan-ablation-on-acdc")
    assert slug("Reliability: what is refused, what is never overwritten") == (
        "reliability-what-is-refused-what-is-never-overwritten")
    assert slug("Several processes (DDP)") == "several-processes-ddp"
    assert slug("The `l2gnet` CLI") == "the-l2gnet-cli"


def test_a_path_outside_the_repository_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "l2gnet train --data ../shared/data/acdc/train_slices [up](../README.md)\n"
        "--out-dir /shared/runs/x\n"
        "cp ../other/file.txt .\n"
        "ls ../shared/dataset\n"
    )
    assert [p.split(": ", 1)[1] for p in outside_paths(page, repo=tmp_path)] == [
        "/shared/runs/x", "../other/file.txt", "../shared/dataset"]
