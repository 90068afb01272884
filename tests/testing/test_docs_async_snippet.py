"""docs/testing.md's async test runs as copied, with the configuration the page gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "testing.md").read_text()


def async_section() -> str:
    found = re.search(r"^### Async tests\n(.*?)(?=^##)", PAGE, re.DOTALL | re.MULTILINE)
    assert found, "docs/testing.md lost its 'Async tests' section"
    return found.group(1)


def test_the_async_snippet_passes_with_the_pages_configuration(
    pytester: pytest.Pytester,
) -> None:
    (toml,) = re.findall(r"```toml\n(.*?)```", async_section(), re.DOTALL)
    (snippet,) = re.findall(r"```python\n(.*?)```", async_section(), re.DOTALL)
    assert 'asyncio_mode = "auto"' in toml
    pytester.makepyprojecttoml(toml + 'filterwarnings = ["error"]\n')
    pytester.makepyfile(chat=(ROOT / "examples" / "testing" / "chat.py").read_text())
    pytester.makepyfile(test_snippet=snippet)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_without_the_configuration_the_snippet_does_not_run(pytester: pytest.Pytester) -> None:
    """What the page warns about: without auto mode (or the marker) nothing runs."""
    (snippet,) = re.findall(r"```python\n(.*?)```", async_section(), re.DOTALL)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nasyncio_mode = "strict"\n')
    pytester.makepyfile(chat=(ROOT / "examples" / "testing" / "chat.py").read_text())
    pytester.makepyfile(test_snippet=snippet)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
