"""docs/architecture.md: its worked examples (add a model, a dataset, an augmentation) run.

Every ```python block of the page is executed, in order, in one fresh interpreter (the
examples register names, which must not leak into the registries of this test session).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_the_page_has_the_three_worked_examples() -> None:
    blocks = _blocks()
    assert len(blocks) == 3
    assert "register_model" in blocks[0] and "register_dataset" in blocks[1]
    assert "register_waveform_augment" in blocks[2]


def test_the_worked_examples_run() -> None:
    code = "\n\n".join(_blocks()) + "\nprint('EXAMPLES OK')\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "EXAMPLES OK" in run.stdout, run.stderr[-3000:]


def test_the_layering_the_page_states_is_the_one_tested() -> None:
    from tests.test_layering import FORBIDDEN

    text = DOC.read_text()
    assert "never `models` or `training`" in text and set(FORBIDDEN["data"]) >= {"audioclf.models", "audioclf.training"}
    assert "**never `training`**" in text and FORBIDDEN["inference"] == ("audioclf.training",)
