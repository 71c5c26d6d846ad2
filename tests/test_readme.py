"""The README's two set-up commands exist, and CI runs the test one verbatim."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("python ui.py") and "requirements.txt" in demo
    assert tests.endswith("python -m pytest")
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines


def test_requirements_pin_torch():
    assert "torch==2.13.0" in (REPO / "requirements.txt").read_text().splitlines()
