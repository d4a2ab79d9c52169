"""The documentation's pointers into the code stay true: every test a page of docs/ names exists,
and every flag the README and docs/ give a ddkit command is one of its flags. (`mkdocs build
--strict` in CI checks the links and the references to ddkit's functions.)"""

import argparse
import re
from pathlib import Path

from ddkit.cli import build_parser

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


def test_every_flag_the_docs_give_a_command_is_one_of_its_flags():
    # `ddkit CMD ... --flag` in a code block or inline code, up to the end of the command
    # (a backtick, a comment, &&, ; or |); the CHANGELOG is left out (it names removed flags)
    parser = build_parser()
    (commands,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {name: {s for a in p._actions for s in a.option_strings} for name, p in commands.items()}
    wrong = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for command, rest in re.findall(r"\bddkit ([a-z][a-z-]*)([^`#;|&\n]*)", line):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                    if command in flags and flag not in flags[command]:
                        wrong.append(f"{page.relative_to(ROOT)}:{n}: ddkit {command} {flag}")
    assert not wrong, "flags that the commands do not have:\n" + "\n".join(wrong)
