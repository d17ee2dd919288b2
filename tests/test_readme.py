"""The README's two set-up commands are the ones the project actually runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _blocks(title: str) -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", _section(title), flags=re.S)


def _commands() -> list[str]:
    """The install + demo line (first block of "Start here") and the test line."""
    return [_blocks("Start here")[0], *_blocks("Running the tests")]


def test_first_screen_is_demo_then_a_published_model_then_your_own_folder() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.index("\n## ") == readme.index("\n## Start here"), "Start here is the first section"
    demo, tag, own = _blocks("Start here")
    assert demo.endswith("audioclf demo")
    assert tag.strip() == "audioclf predict panns-cnn14 clip.wav" and "docs/pretrained.md" in _section("Start here")
    assert "audioclf prepare folder" in own and "audioclf train" in own


def test_two_commands_install_torch_first_with_the_constraints() -> None:
    demo, tests = _commands()
    for cmd in (demo, tests):
        assert "\n" not in cmd.strip()  # one line to copy
        assert cmd.index("pip install torch==2.13.0") < cmd.index("pip install -c constraints.txt")
    assert demo.endswith("audioclf demo") and tests.endswith("python -m pytest")
    assert (ROOT / "constraints.txt").read_text().strip() == "torch==2.13.0"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = _commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"TEST_COMMAND='{tests}'" in ci
    assert 'if [ "$rc" -eq 5 ]' in ci  # pytest's "no tests collected" is a failure
