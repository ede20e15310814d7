"""Bad input fails with one clear KollmError before any compute starts."""

from __future__ import annotations

import pytest
from conftest import korean_texts, write_jsonl

from kollm.errors import KollmError
from kollm.train.run import train_from_recipe


@pytest.fixture()
def setup(tmp_path, tiny_tokenizer):
    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    data = write_jsonl(tmp_path / "train.jsonl", korean_texts(40))

    def train(recipe: str, out: str = "run", resume: bool = False, depth: int | None = None, data_path=data):
        path = tmp_path / "r.toml"
        path.write_text(recipe)
        return train_from_recipe(path, tmp_path / out, resume, depth, data=str(data_path), tokenizer=str(tok))

    return train, tmp_path


TINY = "[model]\nmax_seq_len = 32\n[train]\nbatch_size = 2\nmax_steps = 2\neval_every_s = 1e9\nsample_tokens = 0\n" \
       "tensorboard = false\n"


@pytest.mark.parametrize("recipe, message", [
    ("[train]\nlearning_rate = 0.1\n", "unknown recipe key [train] learning_rate"),
    ("[trainer]\nlr = 0.1\n", "does not use the [trainer] section"),
    ("[data]\nquality = false\n", "does not use the [data] section"),
    ("[model]\ndepth = 2\nn_heads = 3\n", "does not divide width"),
    ("[model]\ndepth = 2\nn_kv_heads = 3\n", "must divide n_heads"),
    ("[model]\nvocab_size = 10\n[train]\nmax_steps = 1\n", "smaller than the tokenizer's"),
    ("[train]\nbatch_size = 6\nmicro_batch_size = 4\nmax_steps = 1\n", "micro_batch_size=4 does not divide"),
    ("[train]\noptimizer = \"sgd\"\nmax_steps = 1\n", "unknown optimizer 'sgd'"),
    ("[train]\nmax_steps = -1\n", "max_steps must be >= 0"),
])
def test_bad_recipe_is_one_clear_error(setup, recipe, message):
    train, _ = setup
    with pytest.raises(KollmError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train(recipe)


def test_missing_data_and_tokenizer(setup, tmp_path):
    train, _ = setup
    with pytest.raises(KollmError, match="does not exist"):
        train(TINY, data_path=tmp_path / "nope.jsonl")
    with pytest.raises(KollmError, match="no tokenizer"):
        train_from_recipe(None, tmp_path / "x", data=str(tmp_path / "train.jsonl"), max_steps=1)


def test_resume_needs_a_checkpoint_of_the_same_model(setup):
    train, tmp = setup
    with pytest.raises(KollmError, match="nothing to resume"):
        train(TINY, resume=True)
    train(TINY, depth=1)
    with pytest.raises(KollmError, match="belongs to a different model .*depth 1 vs 2"):
        train(TINY, resume=True, depth=2)
    assert sorted(p.name for p in (tmp / "run" / "checkpoint").iterdir()) == ["step-00000002"]


def test_compile_without_a_cpp_compiler_is_a_clear_error(monkeypatch):
    import shutil

    import torch

    from kollm.runtime import check_compiler

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(KollmError, match="C\\+\\+ compiler"):
        check_compiler(torch.device("cpu"))
