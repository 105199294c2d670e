"""Every relative link and image in the repository's Markdown points at a file or folder git
tracks, and every `#anchor` at a heading of the target (GitHub's slugs). External links are
not fetched (no network in CI); any `scheme:` link (http, https, mailto, ...) is left alone."""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]

# Code is not Markdown: fenced blocks, inline code spans (which may wrap but not cross a blank
# line) and HTML comments are blanked out before links are looked for, newlines kept for :line.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)*?)(?<!`)\1(?!`)", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# [text](dest "title") and ![alt](dest): text may wrap lines and hold one level of [brackets]
_INLINE = re.compile(r"""
    (?<!\\)!?\[(?:[^\[\]\\]|\\.|\[[^\[\]]*\])*\]
    \(\s*(?:<(?P<angle>[^<>\n]*)>|(?P<bare>(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))+))
    (?:\s+(?:"[^"]*"|'[^']*'|\([^()]*\)))?\s*\)
""", re.X | re.S)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(?:<(?P<angle>[^<>\n]*)>|(?P<bare>\S+))", re.M)
_SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, //host
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_ID = re.compile(r"""<a\s[^>]*\b(?:name|id)=["']([^"']+)["']""", re.I)


def blank_code(text: str) -> str:
    """`text` with code and comments replaced by spaces, every newline where it was."""
    lines, fence = [], ""
    for line in text.split("\n"):
        opening = _FENCE.match(line)
        if fence:
            closing = opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(
                fence) and not line.strip().strip(fence[0])
            lines.append("")
            fence = "" if closing else fence
        elif opening:
            fence = opening.group(1)
            lines.append("")
        else:
            lines.append(line)
    text = "\n".join(lines)
    for pattern in (_COMMENT, _CODE_SPAN):
        text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return text


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, destination) of every inline link, image and reference definition."""
    clean = blank_code(text)
    for pattern in (_INLINE, _REFERENCE):
        for match in pattern.finditer(clean):
            dest = match.group("angle") if match.group("angle") is not None else match["bare"]
            start = match.start("angle") if match.group("angle") is not None else match.start(
                "bare")
            yield clean.count("\n", 0, start) + 1, re.sub(r"\\(.)", r"\1", dest)


def heading_text(source: str) -> str:
    """The text GitHub renders for a heading's Markdown: code spans keep their content, links
    their text; images, HTML tags, emphasis markers and backslash escapes go."""
    parts = re.split(r"(`+)(.+?)\1", source)
    out = []
    for i, part in enumerate(parts):
        if i % 3 == 2:  # a code span's content, verbatim
            out.append(part)
        elif i % 3 == 0:
            part = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", part)
            part = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", part)
            part = re.sub(r"<[^>]+>", "", part)
            part = re.sub(r"\*+|(?<!\w)_+|_+(?!\w)", "", part)
            out.append(re.sub(r"\\(.)", r"\1", part))
    return "".join(out).strip()


def slug(text: str) -> str:
    """github-slugger: lowercase, drop everything but letters, digits, `_`, `-` and spaces, then
    each space to `-` (no collapsing: `a — b` is `a--b`)."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, repeats numbered as GitHub does (`x`, `x-1`, `x-2`), and the
    explicit <a name/id>."""
    seen: dict[str, int] = {}
    found = set(_HTML_ID.findall(text))
    previous = ""
    for line in blank_code(text).split("\n"):
        atx, setext = _ATX.match(line), _SETEXT.match(line)
        title = None
        if atx:
            title = atx.group(2) or ""
        elif setext and previous.strip() and not _ATX.match(previous):
            title = previous.strip()  # only adds anchors: a misread never reports a link
        previous = line
        if title is None:
            continue
        base = slug(heading_text(title))
        name = base
        while name in found:
            seen[base] = seen.get(base, 0) + 1
            name = f"{base}-{seen[base]}"
        found.add(name)
    return found


def tracked_files(root: Path) -> set[str]:
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True,
                            check=False)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.decode().strip()}")
    return {name for name in listed.stdout.decode().split("\0") if name}


def check(root: Path, tracked: set[str]) -> list[str]:
    """`file:line: problem` for each relative link of a tracked .md file that leads nowhere."""
    folders = {str(p) for name in tracked for p in Path(name).parents if str(p) != "."}
    cache: dict[str, set[str]] = {}
    problems = []
    for name in sorted(n for n in tracked if n.endswith(".md") and (root / n).is_file()):
        text = (root / name).read_text(encoding="utf-8")
        for line, dest in links(text):
            if _SCHEME.match(dest):
                continue
            path, _, fragment = dest.partition("#")
            path, fragment = unquote(path.split("?", 1)[0]), unquote(fragment)
            if path:
                # a leading / is the repository's root on GitHub
                joined = path.lstrip("/") if path.startswith("/") else posixpath.join(
                    posixpath.dirname(name), path)
                target = posixpath.normpath(joined)
            else:
                target = name
            where = f"{name}:{line}: ({dest})"
            if target == ".." or target.startswith("../"):
                problems.append(f"{where} leaves the repository")
                continue
            if target != "." and target not in tracked and target not in folders:
                problems.append(f"{where} no tracked file or folder {target}")
                continue
            page = target if target.endswith(".md") else posixpath.join(target, "README.md")
            if not fragment or page not in tracked:
                continue  # anchors of other files (code#L10) are GitHub's viewer's business
            if page not in cache:
                cache[page] = anchors((root / page).read_text(encoding="utf-8"))
            if fragment not in cache[page]:
                problems.append(f"{where} no heading #{fragment} in {page}")
    return problems


def test_every_relative_link_in_the_markdown_resolves() -> None:
    problems = check(REPO, tracked_files(REPO))
    assert not problems, "broken Markdown links:\n" + "\n".join(problems)


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Quick start", "quick-start"),
    ("Docker provider (and its limits)", "docker-provider-and-its-limits"),
    ("TensorFlow on Kubernetes — workshop kit", "tensorflow-on-kubernetes--workshop-kit"),
    ("On the cluster (labs 08\u201311)", "on-the-cluster-labs-0811"),
    ("`labctl run` & *friends*", "labctl-run--friends"),
    ("The [CLI](README.md) in `snake_case` and __bold__", "the-cli-in-snake_case-and-bold"),
    ("Step 2: what's new?", "step-2-whats-new"),
    ("Übersicht", "übersicht"),
])
def test_slugs_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading_text(heading)) == anchor


def test_links_are_found_and_code_is_not_read() -> None:
    text = "\n".join([
        "See [a](a.md), ![img](pics/x.png \"title\") and [b](<b c.md#part>).",  # 1
        "Inline `[not](code.md)` and [wrapped",  # 2
        "text](wrapped.md) and [x](https://example.org) [m](mailto:x@example.org)",  # 3
        "```bash",  # 4
        "[fenced](fenced.md)",  # 5
        "```",  # 6
        "[ref]: refs/file.md#anchor",  # 7
        "<!-- [commented](gone.md) -->",  # 8
        "[paren](dir/f(1).md) \\[escaped](no.md)",  # 9
    ])
    assert list(links(text)) == [
        (1, "a.md"), (1, "pics/x.png"), (1, "b c.md#part"), (3, "wrapped.md"),
        (3, "https://example.org"), (3, "mailto:x@example.org"), (9, "dir/f(1).md"),
        (7, "refs/file.md#anchor"),
    ]


def test_repeated_headings_are_numbered_and_fenced_ones_ignored() -> None:
    text = "# Setup\n## Setup\n```\n# Not a heading\n```\nTitle\n=====\n<a name=\"here\"></a>\n"
    assert anchors(text) == {"setup", "setup-1", "title", "here"}


def test_broken_links_are_named_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\n## Next steps\n\n[ok](docs/guide.md#usage) [dir](docs/) [self](#next-steps)\n"
        "[gone](docs/missing.md)\n[bad anchor](docs/guide.md#nowhere) [up](../outside.md)\n"
        "[own](#top-1) [code](tool.py#L3) [web](https://example.org/x)\n")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Usage\n\n[back](../README.md#top)\n")
    (tmp_path / "tool.py").write_text("")
    tracked = {"README.md", "docs/guide.md", "tool.py"}
    assert check(tmp_path, tracked) == [
        "README.md:6: (docs/missing.md) no tracked file or folder docs/missing.md",
        "README.md:7: (docs/guide.md#nowhere) no heading #nowhere in docs/guide.md",
        "README.md:7: (../outside.md) leaves the repository",
        "README.md:8: (#top-1) no heading #top-1 in README.md",
    ]
