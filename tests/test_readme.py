"""The README's Python examples run as written (STYLE.md rule 10)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert BLOCKS, "README.md should contain python examples"


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs(i):
    exec(compile(BLOCKS[i], f"README.md[python block {i}]", "exec"), {"__name__": "__readme__"})


def test_readme_commands_match_ci():
    """.ci/run must run exactly the README's test command."""
    text = README.read_text()
    cmds = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    test_cmd = next(c for c in cmds if "pytest" in c)
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_cmd.strip() in ci.splitlines()
