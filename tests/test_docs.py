"""The documentation cannot rot: each fenced ``python`` block of the guides listed here runs, in
order, in one namespace (the blocks carry their own checks against closed forms), and every
jaxdiff name a page mentions exists. (CI also builds the site with ``mkdocs build --strict``,
which fails on a broken link or API reference.)"""

import importlib
import re
from pathlib import Path

import pytest

from jaxdiff import losses

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXECUTED = [
    pytest.param(
        "guides/noise-process.md",
        marks=pytest.mark.skipif(
            not hasattr(losses, "denoising_loss"),
            reason="losses.denoising_loss has not landed yet (issue 19)",
        ),
    ),
    "guides/sampler.md",
    "guides/few-step.md",
    "guides/denoiser-adapter.md",
    "guides/reliability.md",
    "guides/own-network.md",
]
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(page: str) -> list[str]:
    """The fenced ``python`` blocks of a Markdown page."""
    return _BLOCK.findall((DOCS / page).read_text())


@pytest.mark.parametrize("page", EXECUTED)
def test_guide_code_runs_as_written(page):
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python block"
    namespace = {"__name__": f"docs.{page}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOCS / page} block {i + 1}", "exec"), namespace)  # noqa: S102


_MODULES = "samplers|losses|processes|schedules|diffusion|elbo|models|data|train|analytic|vdm|metrics|fewstep"
_NAME = re.compile(rf"`(?:jaxdiff\.)?((?:{_MODULES})(?:\.\w+)+)(?:\(\))?`")


def _resolve(dotted: str):
    """The object at ``jaxdiff.<dotted>``: the longest importable module, then attributes."""
    parts = f"jaxdiff.{dotted}".split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_name_the_pages_mention_exists():
    # `samplers.ddim_sample`, `jaxdiff.data.ImageFolder`, ...: a renamed or removed function
    # must not leave a page pointing at it
    pages = sorted(DOCS.rglob("*.md"))
    files = ("json", "jsonl", "png", "npz", "csv", "py")  # `metrics.jsonl` is a file, not a name
    names = {
        (page.relative_to(DOCS), m)
        for page in pages
        for m in _NAME.findall(page.read_text())
        if m.rsplit(".", 1)[-1] not in files
    }
    assert len(names) > 30
    missing = []
    for page, name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(f"{page}: {name}")
    assert not missing, missing
