"""Tests for imgsim.core.config: loading TOML/YAML/JSON files, checking names, coercing values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgsim.core.config import (
    Config,
    ExtractConfig,
    ModelConfig,
    SearchConfig,
    TrainConfig,
    from_dict,
    load_config,
    replace,
    to_dict,
)
from imgsim.core.errors import ConfigError

TOML = """
[model]
image_size = 32
widths = [8, 16]

[train]
epochs = 3
learning_rate = "1e-4"
augment = false
data_dir = "photos"

[search]
top_k = 5
threshold = 12.5
"""

YAML = """
model:
  image_size: 32
  widths: "8,16"
train:
  epochs: 3
  learning-rate: 1.0e-4
  augment: no
  data_dir: photos
search:
  top_k: 5
  threshold: 12.5
"""

JSON = json.dumps(
    {
        "model": {"image_size": 32, "widths": [8, 16]},
        "train": {"epochs": 3, "learning_rate": 0.0001, "augment": "false", "data_dir": "photos"},
        "search": {"top_k": "5", "threshold": 12.5},
    }
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text"), [("c.toml", TOML), ("c.yaml", YAML), ("c.yml", YAML), ("c.json", JSON)]
)
def test_load_config_from_each_format(tmp_path: Path, name: str, text: str) -> None:
    config = load_config(write(tmp_path, name, text))
    assert config.model == ModelConfig(image_size=32, widths=(8, 16))
    assert config.train == TrainConfig(
        epochs=3, learning_rate=1e-4, augment=False, data_dir="photos"
    )
    assert config.extract == ExtractConfig()
    assert config.search == SearchConfig(top_k=5, threshold=12.5)
    assert isinstance(config.train.learning_rate, float)
    assert isinstance(config.search.top_k, int)


def test_load_config_without_a_file_gives_defaults() -> None:
    assert load_config(None) == Config()


@pytest.mark.parametrize(("name", "text"), [("c.toml", ""), ("c.yaml", ""), ("c.json", "{}")])
def test_load_empty_config_gives_defaults(tmp_path: Path, name: str, text: str) -> None:
    assert load_config(write(tmp_path, name, text)) == Config()


def test_load_config_accepts_a_str_path(tmp_path: Path) -> None:
    path = write(tmp_path, "c.toml", "[extract]\nplot = true\nbatch_size = 8\n")
    assert load_config(str(path)).extract == ExtractConfig(plot=True, batch_size=8)


def test_json_null_keeps_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{"train": {"epochs": null, "seed": 7}}')
    assert load_config(path).train == TrainConfig(seed=7)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.toml", "[trian]\nepochs = 3\n", "unknown section \\[trian\\]"),
        ("c.yaml", "serach:\n  top_k: 3\n", "unknown section \\[serach\\]"),
        ("c.toml", "[train]\nepoch = 3\n", "unknown setting 'epoch'"),
        ("c.json", '{"model": {"depth": 3}}', "unknown setting 'depth'"),
        ("c.toml", 'train = "fast"\n', "must be a table"),
        ("c.yaml", "- train\n- model\n", "must hold sections"),
        ("c.json", "[1, 2]", "must hold sections"),
        ("c.toml", "[train\nepochs = 3\n", "cannot parse"),
        ("c.yaml", "train: [epochs\n", "cannot parse"),
        ("c.json", '{"train": ', "cannot parse"),
        ("c.ini", "[train]\nepochs = 3\n", "must be .toml, .yaml, .yml or .json"),
        ("c.toml", '[train]\nepochs = "many"\n', "bad value 'many' for epochs"),
        ("c.toml", '[model]\nwidths = "8,x"\n', "bad value '8,x' for widths"),
        ("c.toml", "[model]\nwidths = 8\n", "bad value 8 for widths"),
        ("c.toml", '[train]\naugment = "maybe"\n', "bad value 'maybe' for augment"),
    ],
)
def test_load_config_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, name, text))


def test_load_config_unknown_key_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "c.toml", "[search]\ntopk = 3\n"))
    assert "top_k" in str(info.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"[train]\nepochs = 3\n\xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(path)


# --- coercion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"learning_rate": "1e-4"}, {"learning_rate": 1e-4}),
        ({"learning_rate": 1}, {"learning_rate": 1.0}),
        ({"margin": " 0.5 "}, {"margin": 0.5}),
        ({"epochs": "7"}, {"epochs": 7}),
        ({"epochs": 7}, {"epochs": 7}),
        ({"data_dir": Path("a/b")}, {"data_dir": "a/b"}),
        ({"data-dir": "x", "batch-size": "16"}, {"data_dir": "x", "batch_size": 16}),
        ({"epochs": None}, {}),
    ],
)
def test_replace_coerces_values(values: dict, expected: dict) -> None:
    config = replace(TrainConfig(), values)
    assert config == TrainConfig(**expected)
    for key, value in expected.items():
        assert type(getattr(config, key)) is type(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("32,64", (32, 64)),
        ("32, 64 ,128", (32, 64, 128)),
        ("16", (16,)),
        ([32, 64], (32, 64)),
        (("8", "16"), (8, 16)),
    ],
)
def test_replace_coerces_tuples(value: object, expected: tuple[int, ...]) -> None:
    assert replace(ModelConfig(), {"widths": value}).widths == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        (" TRUE ", True),
        ("false", False),
        ("no", False),
        ("off", False),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_replace_coerces_booleans(value: object, expected: bool) -> None:
    assert replace(TrainConfig(), {"augment": value}).augment is expected


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (TrainConfig, {"augment": "maybe"}),
        (TrainConfig, {"augment": ""}),
        (TrainConfig, {"epochs": "ten"}),
        (TrainConfig, {"epochs": "1e-4"}),
        (TrainConfig, {"learning_rate": "fast"}),
        (ModelConfig, {"widths": "32;64"}),
        (ModelConfig, {"widths": 32}),
        (SearchConfig, {"no_such_setting": 1}),
    ],
)
def test_replace_rejects_bad_values(cls: type, values: dict) -> None:
    with pytest.raises(ConfigError):
        replace(cls(), values)


def test_replace_returns_a_copy() -> None:
    original = SearchConfig()
    changed = replace(original, {"top_k": 3})
    assert changed.top_k == 3
    assert original.top_k == SearchConfig().top_k


# --- to_dict / from_dict -----------------------------------------------------------------------


def test_to_dict_is_plain_json() -> None:
    values = to_dict(ModelConfig(widths=(8, 16), blocks=(2, 2)))
    assert values == {
        "image_size": 0,
        "embedding_dim": 128,
        "widths": [8, 16],
        "blocks": [2, 2],
        "head_hidden": 256,
        "test_flip": "auto",
        "backbone": "auto",
    }
    assert json.loads(json.dumps(values)) == values


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(),
        ModelConfig(image_size=32, widths=(8, 16), blocks=(1, 2), embedding_dim=16),
        TrainConfig(),
        TrainConfig(epochs=2, learning_rate=3e-3, augment=False, lr_schedule="constant"),
        ExtractConfig(plot=True, workers=2),
        SearchConfig(threshold=50.0, top_k=3),
    ],
)
def test_to_dict_from_dict_round_trip(config: object) -> None:
    assert from_dict(type(config), to_dict(config)) == config
    assert from_dict(type(config), json.loads(json.dumps(to_dict(config)))) == config


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    assert from_dict(ModelConfig, {"image_size": 32, "from_a_newer_version": 1}) == ModelConfig(
        image_size=32
    )


def test_whole_config_round_trips_through_a_json_file(tmp_path: Path) -> None:
    config = Config(
        model=ModelConfig(widths=(4, 8)),
        train=TrainConfig(epochs=1, augment=False),
        extract=ExtractConfig(batch_size=2),
        search=SearchConfig(top_k=1),
    )
    sections = {name: to_dict(getattr(config, name)) for name in vars(config)}
    path = write(tmp_path, "c.json", json.dumps(sections))
    assert load_config(path) == config
