from pathlib import Path

import pytest
import yaml

from audioclf.config import ConfigError, apply_overrides, load_config, parse_override, save_config


def test_defaults_and_recipe_merge(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: esc\ndata:\n  batch_size: 8\n  fold: 1\nmodel:\n  name: cnn14\n")
    c = load_config(recipe, ["trainer.max_epochs=3", "data.batch_size=16", "model.settings={sample_rate: 16000}"])
    assert c.name == "esc"
    assert c.data.batch_size == 16  # override beats recipe
    assert c.data.fold == 1  # recipe kept
    assert c.trainer.max_epochs == 3
    assert c.model.settings == {"sample_rate": 16000}
    assert c.optim.lr == 1e-3  # default filled in


def test_override_values_are_yaml() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=text") == (["a"], "text")
    assert apply_overrides({"x": {"y": 1}}, ["x.z=2"]) == {"x": {"y": 1, "z": 2}}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochz=3", "trainer.max_epochz: unknown key; did you mean 'trainer.max_epochs'"),
        ("trainer.max_epochz=3", "allowed keys here: accelerator"),
        ("trainer.precision=64", "trainer.precision"),
        ("data.batch_size=abc", "data.batch_size"),
        ("data.batch_size=0", "greater than or equal to 1"),
        ("data.sampler=random", "'shuffle' or 'balanced'"),
        ("nonsense=1", "nonsense: unknown key"),
    ],
)
def test_bad_key_or_value_names_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert expected in str(info.value)


def test_precision_accepts_yaml_int() -> None:
    assert load_config(None, ["trainer.precision=32"]).trainer.precision == "32"


def test_test_fold_can_never_be_validation_fold() -> None:
    with pytest.raises(ConfigError, match="never validate on the test fold"):
        load_config(None, ["data.fold=2", "data.val_fold=2"])
    with pytest.raises(ConfigError, match="needs data.fold"):
        load_config(None, ["data.val_fold=2"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory, not a YAML config file"):
        load_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listy)
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["no_equals_sign"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["name=x", "name.sub=1"])


def test_saved_config_reloads_identically(tmp_path: Path) -> None:
    c = load_config(None, ["data.store=x.h5", "task.mix.methods={mixup: 1.0}", "optim.layer_lr={frontend.: 0.1}"])
    save_config(c, tmp_path / "config.yaml")
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert raw["task"]["mix"]["methods"] == {"mixup": 1.0}
    assert load_config(tmp_path / "config.yaml") == c


def test_describe_config_covers_every_leaf_with_its_bounds() -> None:
    from audioclf.config import describe_config

    keys = {k.key: k for k in describe_config()}
    assert keys["data.batch_size"].type == "int" and keys["data.batch_size"].allowed == ">= 1"
    assert keys["task.loss"].allowed == "auto | ce | bce" and keys["task.loss"].default == "auto"
    assert keys["optim.betas"].type == "2 x float" and keys["optim.betas"].default == [0.9, 0.999]
    assert keys["model.pretrained"].type == "str or null" and keys["model.pretrained"].description
    recipe = load_config(None, ["optim.lr=0.5"])
    assert {k.key: k.default for k in describe_config(recipe)}["optim.lr"] == 0.5


@pytest.mark.parametrize("name", ["../../X", "a/b", "..", ".", "", "a\\..\\b", ".hidden"])
def test_run_names_cannot_leave_output_dir(name: str) -> None:
    from audioclf.config import ConfigError

    with pytest.raises(ConfigError, match="name must be a plain directory name"):
        load_config(None, [f"name={name!r}" if name else "name=''"])


@pytest.mark.parametrize("text", ["[" * 1000, "a: &a [*a]", "model:\n  settings: &s {x: *s}", "name: &n [*n]"])
def test_deep_or_recursive_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="deep.yaml"):
        load_config(path)


# -- fuzzing: any recipe text or override is a valid config or a ConfigError, never a crash ---------
def test_fuzz_config_loader(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = st.sampled_from(["name", "seed", "data.store", "data.batch_size", "trainer.max_epochs", "optim.lr",
                            "optim.name", "model.settings", "task.mix.methods", "trainer", "x.y", "data..store", ""])
    values = st.one_of(st.sampled_from(["3", "-1", "1e30", "nan", ".inf", "[1, 2]", "{a: 1}", "null", "'../x'", "[",
                                        "{", "!!python/object:os.system", "&a [*a]", "\"unterminated"]),
                       st.text(max_size=12))
    yaml_text = st.one_of(st.text(max_size=200), st.lists(st.tuples(keys, values), max_size=5).map(
        lambda kv: "\n".join(f"{k.split('.')[0] or 'k'}:\n  {k.split('.')[-1] or 'v'}: {v}" for k, v in kv)))

    @settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(yaml_text, st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=20), max_size=4))
    def run(text: str, overrides: list[str]) -> None:
        path = tmp_path / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path, overrides)
        except ConfigError:
            return
        assert "/" not in cfg.name and cfg.data.batch_size >= 1

    run()


def test_fuzz_config_file_bytes(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        path = tmp_path / "bytes.yaml"
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as err:
            assert "bytes.yaml" in str(err)

    run()
