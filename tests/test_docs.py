"""The documentation's code runs as written: each fenced ``python`` block of the guides listed
here is executed, in order, in one namespace (the blocks carry their own checks against
closed forms)."""

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
