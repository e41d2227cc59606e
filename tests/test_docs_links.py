"""The repository holds what its documents cite: every relative link and image in README.md
and docs/**/*.md resolves to a file (or folder of files) tracked by git."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
"""Markdown links and images: ``[text](target)`` and ``![alt](target "title")``."""


def tracked() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(out.splitlines())


def documents(files: set[str]) -> list[str]:
    return sorted(f for f in files if f == "README.md" or re.fullmatch(r"docs/.+\.md", f))


def relative_targets(text: str) -> list[str]:
    """Link targets that point into the repository (no scheme, no pure anchor)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        found.append(unquote(target.split("#", 1)[0]))
    return found


def test_link_parser_finds_links_and_images_and_skips_urls() -> None:
    text = (
        'see [the model](docs/model.md#data) and ![fig](docs/a%20b.png "t"), '
        "[web](https://example.org), [here](#top)\n```\n[not](x.md)\n```"
    )
    assert relative_targets(text) == ["docs/model.md", "docs/a b.png"]


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_every_relative_link_in_the_docs_resolves_to_a_tracked_file() -> None:
    files = tracked()
    folders = {str(parent) for f in files for parent in Path(f).parents}
    docs = documents(files)
    assert "README.md" in docs and "docs/model.md" in docs
    broken = []
    for doc in docs:
        base = (ROOT / doc).parent
        for target in relative_targets((ROOT / doc).read_text()):
            path = (base / target).resolve()
            try:
                rel = str(path.relative_to(ROOT))
            except ValueError:
                broken.append(f"{doc}: {target} (outside the repository)")
                continue
            rel = rel.rstrip("/")
            if rel not in files and rel not in folders:
                broken.append(f"{doc}: {target}")
    assert not broken, "links to files git does not track:\n" + "\n".join(broken)
