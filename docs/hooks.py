"""MkDocs hooks: the API reference is generated, one page per public module of jaxdiff, so that a
new module has its page without anyone writing one; and a guide added under ``docs/guides/`` joins
the how-to section of the navigation and the guides' table by itself (after the listed ones, by
file name).

A module's page renders its docstring and its public names (``__all__`` or ``X as X``
re-exports); a package whose public names live in public submodules (``jaxdiff.models.unet``,
``jaxdiff.metrics.fid``, ...) gets a section per submodule instead.
"""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

from mkdocs.structure.files import File

PACKAGE = Path(__file__).resolve().parent.parent / "jaxdiff"  # this checkout's, not an installed one
DOCS = Path(__file__).resolve().parent
API_SECTION = "API reference"
GUIDES_SECTION = "How-to guides"
_SKIP = {"configs", "__main__"}


def _public(name: str) -> bool:
    return not any(part.startswith("_") or part in _SKIP for part in name.split(".")[1:])


def _submodules(package: str) -> list[str]:
    path = PACKAGE.joinpath(*package.split(".")[1:])
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules([str(path)])
        if _public(f"{package}.{info.name}")
    )


def modules() -> list[str]:
    """The public top-level modules and packages of jaxdiff, by name."""
    return _submodules("jaxdiff")


def _is_package(module: str) -> bool:
    return PACKAGE.joinpath(*module.split(".")[1:], "__init__.py").is_file()


def _reexports(package: str) -> list[str]:
    """The names a package's ``__init__`` re-exports as ``from M import X as X``, in order."""
    tree = ast.parse(PACKAGE.joinpath(*package.split(".")[1:], "__init__.py").read_text())
    return [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    ]


def page(module: str) -> str:
    """The Markdown of ``module``'s reference page."""
    parts = [f"# `{module}`\n"]
    package = _is_package(module)
    subs = _submodules(module) if package else []
    members = subs or (_reexports(module) if package else [])
    if members:
        parts.append(f"::: {module}\n    options:\n      show_root_heading: false\n      members: false\n")
        names = subs or [f"{module}.{name}" for name in members]
        parts += [f"::: {name}\n    options:\n      heading_level: 2\n" for name in names]
    else:
        parts.append(f"::: {module}\n    options:\n      show_root_heading: false\n")
    return "\n".join(parts)


def _summary(module: str) -> str:
    """The first sentence of a module's docstring."""
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts, "__init__.py")
    if not path.is_file():
        path = PACKAGE.joinpath(*parts[:-1], f"{parts[-1]}.py")
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraph = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(doc.split("\n\n")[0].split()))
    abbreviations = "".join(rf"(?<!\b{a})" for a in ("al", "App", "Sec", "eq", "Fig", "Alg"))
    first = re.split(abbreviations + r"\.\s+(?=[A-Z])", paragraph)[0]
    return first.rstrip(".").replace(" | ", ", ").replace("|", "\\|")


def index() -> str:
    """The Markdown of the reference's index: every module with its summary."""
    rows = [f"| [`{m}`]({m.split('.', 1)[1]}.md) | {_summary(m)} |" for m in modules()]
    return "\n".join([INDEX_HEAD, "| module | what |", "| --- | --- |", *rows, ""])


INDEX_HEAD = """# API reference

Generated from the docstrings, one page per public module (by `docs/hooks.py`, so a new module
has its page as soon as it exists). Import the flat public API (`jaxdiff.samplers.ddim_sample`,
`jaxdiff.losses.denoising_loss`), never a private path.
"""


def _title(page: Path) -> str:
    """A page's first ``# `` heading, else its file name."""
    for line in page.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem


def _listed(entries) -> set[str]:
    """The page paths a nav section lists."""
    return {e if isinstance(e, str) else next(iter(e.values())) for e in entries}


def on_config(config):
    """Lists the generated pages under the API section of the nav, and the guides it does not
    list yet under the how-to section."""
    for entry in config.nav:
        if isinstance(entry, dict) and API_SECTION in entry:
            entry[API_SECTION] = ["api/index.md", *(f"api/{m.split('.', 1)[1]}.md" for m in modules())]
        if isinstance(entry, dict) and GUIDES_SECTION in entry:
            guides = entry[GUIDES_SECTION]
            listed = _listed(guides)
            for page in sorted((DOCS / "guides").glob("*.md")):
                if f"guides/{page.name}" not in listed:
                    guides.append({_title(page): f"guides/{page.name}"})
    return config


def _first_sentence(page: Path) -> str:
    """The first sentence of a page's first paragraph after its title."""
    paragraphs = [p for p in page.read_text().split("\n\n") if p.strip() and not p.startswith("#")]
    text = " ".join(paragraphs[0].split()) if paragraphs else ""
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0].replace("|", "\\|")


def on_page_markdown(markdown, page, config, files):
    """The guides' index ends with their table: guides it does not link yet get a row."""
    if page.file.src_uri != "guides/index.md":
        return markdown
    rows = [
        f"| [{_title(guide)}]({guide.name}) | {_first_sentence(guide)} |"
        for guide in sorted((DOCS / "guides").glob("*.md"))
        if guide.name != "index.md" and f"({guide.name})" not in markdown
    ]
    return markdown.rstrip("\n") + "\n" + "".join(row + "\n" for row in rows)


def on_files(files, config):
    """Adds a generated page for each module and the index (a hand-written
    ``docs/api/NAME.md`` wins)."""
    if files.get_file_from_path("api/index.md") is None:
        files.append(File.generated(config, "api/index.md", content=index()))
    for module in modules():
        uri = f"api/{module.split('.', 1)[1]}.md"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, content=page(module)))
    return files
