"""A griffe extension for the API reference: the docstrings' reStructuredText bits become Markdown.

jaxdiff's docstrings are Google style with a little reStructuredText: ``.. math::`` blocks and
``:math:`...``` for equations, ``:func:`x``` style roles, ``literal``, and ``Example::``. This
turns them into arithmatex's ``$$...$$`` and ``$...$`` (rendered by MathJax) and inline code,
before mkdocstrings renders the docstring as Markdown.
"""

from __future__ import annotations

import re

import griffe

_ROLE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc|const):`~?([^`]+)`")
_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")


def _blocks(lines: list[str]) -> list[str]:
    """``.. math:: a`` and its indented continuation lines -> a ``$$ ... $$`` block."""
    out, i = [], 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, body = match.group(1), [match.group(2)] if match.group(2).strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            if lines[i].strip() or (body and i + 1 < len(lines) and lines[i + 1].startswith(indent + " ")):
                body.append(lines[i].strip())
            i += 1
        out += ["", f"{indent}$$", *[indent + b for b in body if b], f"{indent}$$", ""]
    return out


def markdown(text: str) -> str:
    """The Markdown of a docstring written with jaxdiff's reStructuredText habits."""
    text = "\n".join(_blocks(text.splitlines()))
    text = _ROLE_MATH.sub(lambda m: f"${m.group(1).strip()}$", text)
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


class RstMath(griffe.Extension):
    """Rewrites every docstring with :func:`markdown` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
