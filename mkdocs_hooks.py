"""MkDocs hook: links written for the README's single page, rewritten into the docs site's pages.

Text moved from the README keeps working in the site: ``docs/img/x.png`` and ``docs/solver.md`` are
paths from the repository root, which a page under ``docs/`` reaches as ``img/x.png`` and
``solver.md``; ``#reproducibility`` and the README's other section anchors now live on other pages.
docs/e1.md relies on this (it holds the README's E1 text verbatim), and so does any text pasted
from the README later. A link the map does not know is left alone, so ``mkdocs build --strict``
still reports it.
"""

from __future__ import annotations

import re

#: The README's former section anchors and where that text lives now.
README_ANCHORS = {
    "set-up-and-run": "getting-started.md#set-up",
    "reproducibility": "reproducibility.md",
    "library": "getting-started.md#the-library",
    "command-line": "getting-started.md#the-command-line",
    "the-pid-solver": "pid.md#the-solver",
    "benchmark": "benchmarks.md#pid-solver",
    "estimation-from-representations": "pid.md#estimation-from-representations",
    "distillation": "distillation.md",
    "gpus-mixed-precision-tensorboard": "distillation.md#gpus-mixed-precision-tensorboard",
    "your-own-model-data-and-weights": "distillation.md#your-own-model-data-and-weights",
    "data-sets-larger-than-memory": "distillation.md#data-sets-larger-than-memory",
    "in-your-own-training-loop": "distillation.md#in-your-own-training-loop",
    "training-step-benchmark": "benchmarks.md#training-step",
    "methods-and-deviations-from-the-papers": "methods.md",
    "reproducing-the-papers": "reproducing.md",
    "experiments-deviations-from-the-papers": "reproducing.md#experiments-deviations-from-the-papers",
    "why-rid-falls-below-the-baseline-and-rid-nofreeze": (
        "e1.md#why-rid-falls-below-the-baseline-and-rid-nofreeze"
    ),
    "teacher-audit": "audit.md",
    "several-processes-crashes-and-hostile-inputs": "robustness.md",
    "scaling": "benchmarks.md#scaling",
    "pid-methods-and-deviations-from-the-paper": "pid.md#deviations-from-the-paper",
    "layout": "architecture.md",
    "roadmap": "index.md#roadmap",
}

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _heading_anchors(markdown: str) -> set[str]:
    """The anchors the page's own headings get (MkDocs' default slugs, enough for this check)."""
    slugs = set()
    for title in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).strip()
        slugs.add(re.sub(r"[\s]+", "-", slug))
    return slugs


def rewrite(markdown: str, page_path: str) -> str:
    """The page's markdown with README-style links pointed at the site's pages."""
    depth = page_path.count("/")  # pages in docs/api/ reach docs/ one level up
    up = "../" * depth
    own = _heading_anchors(markdown)
    own_page = page_path

    def fix(match: re.Match) -> str:
        target = match.group("target")
        if target.startswith("docs/"):
            return f"]({up}{target[len('docs/'):]})"
        if target.startswith("#") and target[1:] not in own and target[1:] in README_ANCHORS:
            new = README_ANCHORS[target[1:]]
            if new.split("#")[0] == own_page:
                new = "#" + new.split("#", 1)[1] if "#" in new else "#"
            return f"]({up}{new})"
        return match.group(0)

    return _LINK.sub(fix, markdown)


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs' hook signature
    return rewrite(markdown, page.file.src_uri)
