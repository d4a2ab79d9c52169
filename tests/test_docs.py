"""The documentation's pointers into the tests stay true: every test a page of docs/ names exists.
(`mkdocs build --strict` in CI checks the links and the references to ddkit's functions.)"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _defined_tests() -> dict[str, set[str]]:
    return {
        p.name: set(re.findall(r"^def (test_\w+)", p.read_text(), flags=re.M))
        for p in (ROOT / "tests").glob("test_*.py")
    }


def test_every_test_a_docs_page_names_exists():
    defined = _defined_tests()
    everywhere = set().union(*defined.values())
    missing = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text()
        for file, name in re.findall(r"`tests/(test_\w+\.py)(?:::(test_\w+))?`", text):
            if file not in defined or (name and name not in defined[file]):
                missing.append(f"{page.relative_to(ROOT)}: tests/{file}::{name}")
        for name in re.findall(r"`(test_\w+)`", text):
            if name not in everywhere:
                missing.append(f"{page.relative_to(ROOT)}: {name}")
    assert not missing, "pages name tests that do not exist:\n" + "\n".join(missing)
