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


def test_a_train_run_resolves_its_model_config_once(tmp_path, tiny_tokenizer, monkeypatch):
    from conftest import korean_texts, write_jsonl

    from kollm.train.run import train_from_recipe

    calls = []
    original = ModelConfig.resolved
    monkeypatch.setattr(ModelConfig, "resolved", lambda self: calls.append(1) or original(self))
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    recipe = tmp_path / "r.toml"
    recipe.write_text("[model]\ndepth = 1\nmax_seq_len = 32\n[train]\nbatch_size = 2\nmax_steps = 1\n"
                      "eval_every_s = 1e9\nsample_tokens = 0\ntensorboard = false\n")
    train_from_recipe(recipe, tmp_path / "run", data=str(write_jsonl(tmp_path / "t.jsonl", korean_texts(20))),
                      tokenizer=str(tmp_path / "tok"))
    assert len(calls) == 1
