from __future__ import annotations

import dataclasses

import pytest
from conftest import REPO

from kollm.config import build, load_recipe, override, section
from kollm.data import DataConfig
from kollm.errors import KollmError
from kollm.model import ModelConfig
from kollm.tokenizer import TokenizerConfig
from kollm.train import TrainConfig


def test_quickstart_recipe_is_the_embedded_one_and_loads():
    from kollm.quickstart import default_recipe

    assert (REPO / "recipes" / "quickstart.toml").read_text() == default_recipe().read_text()
    r = load_recipe(REPO / "recipes" / "quickstart.toml")
    for name, cls in [("data", DataConfig), ("tokenizer", TokenizerConfig), ("model", ModelConfig),
                      ("train", TrainConfig)]:
        cfg = section(r, name, cls)
        assert dataclasses.is_dataclass(cfg)
    assert section(r, "train", TrainConfig).time_budget > 0


def test_unknown_keys_and_wrong_types_are_errors():
    with pytest.raises(KollmError, match="unknown recipe key"):
        build(TrainConfig, {"lr": 1e-3, "lrr": 2})
    with pytest.raises(KollmError, match="must be int"):
        build(ModelConfig, {"depth": "four"})


def test_cli_overrides_only_given_values():
    cfg = override(TrainConfig(lr=1e-3, batch_size=8), batch_size=None, lr=2e-3)
    assert cfg.lr == 2e-3 and cfg.batch_size == 8
