"""The documentation runs: every ```python block in docs/*.md, and the docstring examples of the
public modules."""

import doctest
import importlib
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(path):
    """(first line number, code) of every ```python block of a markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


DOC_FILES = sorted(DOCS.glob("*.md"))


def test_conventions_has_runnable_blocks():
    assert (DOCS / "conventions.md").exists()
    assert len(_blocks(DOCS / "conventions.md")) >= 3  # quick start, no-flip, textbook, worked examples


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_markdown_python_blocks_run(path):
    # Blocks of one file run in order in one namespace (a later block may use an earlier name).
    namespace = {"__name__": f"docs.{path.stem}"}
    for line, code in _blocks(path):
        if code.lstrip().startswith(">>>"):
            parser = doctest.DocTestParser()
            test = parser.get_doctest(code, namespace, f"{path.name}:{line}", str(path), line)
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            runner.run(test)
            assert runner.failures == 0, f"{path.name}:{line}: doctest failed"
        else:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)


@pytest.mark.parametrize("module", ["fastconv.conv", "fastconv.dispatch", "fastconv.shapes", "fastconv.reference.conv"])
def test_module_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), verbose=False)
    assert result.attempted > 0 and result.failed == 0
