"""Typed config: unknown keys, types, ranges, overrides, YAML loading."""

from __future__ import annotations

import pytest
import yaml

from nnip.config import apply_overrides, config_from_dict, load_config
from nnip.errors import ConfigError


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.learning_rat'; "
                                          r"known keys: epochs, .*\blr\b"):
        config_from_dict({"data": {"train": ["x.xyz"]}, "train": {"learning_rat": 1e-3}})
    with pytest.raises(ConfigError, match="'train.epoch'.*did you mean 'epochs'"):
        config_from_dict({"data": {"train": ["x.xyz"]}, "train": {"epoch": 3}})
    with pytest.raises(ConfigError, match="unknown config key 'modle'.*did you mean 'model'"):
        config_from_dict({"data": {"train": ["x.xyz"]}, "modle": {}})


def test_types_and_ranges_with_units():
    base = {"data": {"train": ["x.xyz"]}}
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        config_from_dict({**base, "train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match=r"model.cutoff must be in \[1.0, 20.0\] Å, got 0.5 Å"):
        config_from_dict({**base, "model": {"cutoff": 0.5}})
    with pytest.raises(ConfigError, match="'cosin' is not one of.*did you mean 'cosine'"):
        config_from_dict({**base, "train": {"scheduler": "cosin"}})
    with pytest.raises(ConfigError, match="data.train: give at least one"):
        config_from_dict({})


def test_single_file_becomes_a_list_and_overrides_apply(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "d/train.xyz"}, "train": {"lr": 0.01}}))
    config = load_config(path, ["train.lr=5e-4", "model.params.n_features=8"])
    assert config.train.lr == 5e-4
    assert config.model.params == {"n_features": 8}
    assert config.data.train == [str((tmp_path / "d" / "train.xyz").resolve())]
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["train.lr"])


def test_d3_takes_a_functional_or_checked_options():
    base = {"data": {"train": ["x.xyz"]}}
    assert config_from_dict({**base, "model": {"d3": "pbe"}}).model.d3 == "pbe"
    options = {"xc": "pbe", "cutoff": 12.0, "smoothing": "none"}
    assert config_from_dict({**base, "model": {"d3": options}}).model.d3 == options
    for d3, message in (({"smothing": "none"}, "model.d3.smothing.*smoothing"),
                        ({"damping": "bj3"}, "model.d3.damping"),
                        ({"cutoff": 0.5}, r"model.d3.cutoff must be in \[1.0, 100.0\] Å")):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({**base, "model": {"d3": d3}})
