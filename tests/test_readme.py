"""The README's two commands are the ones that work: CI runs the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmd = next(b.strip() for b in _bash_blocks(readme) if "pytest" in b)
    ci_lines = [
        l.strip()
        for l in (ROOT / ".ci" / "run").read_text().splitlines()
        if l.strip() and not l.strip().startswith("#")
    ]
    assert test_cmd in ci_lines


def test_main_job_trains_and_samples_with_real_options():
    from ddkit.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    main_job = next(b.strip() for b in _bash_blocks(readme) if "ddkit train" in b)
    parser = build_parser()
    for part in main_job.split("&&"):
        words = part.split()
        if words[0] == "ddkit":
            parser.parse_args(words[1:])  # raises on an option that does not exist
    assert "ddkit sample" in main_job and "--grid" in main_job
