"""How the CLI ends: user errors (AudioclfError) are one line and exit 2; bugs are not
dressed up as user errors (their traceback shows, exit 1)."""

from __future__ import annotations

import pytest

from audioclf import cli
from audioclf.errors import ConfigError


def _replace_models_verb(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def fail(args):
        raise error

    fn, *rest = cli._COMMANDS["models"]
    monkeypatch.setitem(cli._COMMANDS, "models", (fail, *rest))


def test_audioclf_errors_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _replace_models_verb(monkeypatch, ConfigError("model.name: unknown model 'x'"))
    assert cli.main(["models"]) == 2
    assert "error: model.name: unknown model 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [TypeError("f() got 2 arguments"), KeyError("k")])
def test_type_and_key_errors_are_bugs_not_user_errors(monkeypatch: pytest.MonkeyPatch, bug: Exception) -> None:
    _replace_models_verb(monkeypatch, bug)
    with pytest.raises(type(bug)):
        cli.main(["models"])

