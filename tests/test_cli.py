"""The CLI explains itself and turns bad input into one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import korean_texts, run_kollm, write_jsonl


def test_help_lists_every_stage():
    r = run_kollm("--help")
    assert r.returncode == 0
    for cmd in ("data", "tokenizer", "train", "eval", "serve", "quickstart"):
        assert cmd in r.stdout
    for cmd in (["data", "run"], ["tokenizer", "train"], ["train"], ["train", "export"], ["eval"], ["serve"],
                ["serve", "generate"], ["quickstart"]):
        sub = run_kollm(*cmd, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "Usage" in sub.stdout
        assert "--recipe" in sub.stdout or cmd == ["train", "export"]  # every stage command takes a recipe


def test_every_stage_command_refuses_a_section_it_does_not_use(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[serve]\nport = 9000\n")
    for cmd in (["data", "run"], ["tokenizer", "train", "--out", str(tmp_path / "t")], ["train"], ["eval"]):
        r = run_kollm(*cmd, "--recipe", str(recipe))
        assert r.returncode == 2 and "does not use the [serve] section" in r.stderr, (cmd, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    recipe.write_text("[data]\nquality = false\n")
    r = run_kollm("serve", "--recipe", str(recipe))
    assert r.returncode == 2 and "does not use the [data] section" in r.stderr


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp / "empty.jsonl"
    empty.write_text("")
    cp949 = tmp / "legacy.txt"
    cp949.write_bytes("한국어 문서입니다. 인코딩이 다릅니다.".encode("cp949") * 50)
    binary = tmp / "blob.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 20)
    small = write_jsonl(tmp / "small.jsonl", ["짧은 문서 하나뿐입니다. 이것으로는 나눌 수 없습니다."])
    return {
        "missing": (tmp / "nope.jsonl", "does not exist"),
        "empty": (empty, "is empty"),
        "non-utf8": (cp949, "not valid UTF-8"),
        "binary": (binary, "binary"),
        "too-small": (small, "too small to split"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "non-utf8", "binary", "too-small"])
def test_quickstart_bad_data_is_a_one_line_error(tmp_path, case):
    path, expected = _bad_inputs(tmp_path)[case]
    r = run_kollm("quickstart", "--data", str(path), "--out", str(tmp_path / "out"), "--no-serve",
                  "--time-budget", "5")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    err = [line for line in r.stderr.splitlines() if line.startswith("kollm: error:")]
    assert len(err) == 1 and expected in err[0], r.stderr


def test_train_rejects_unknown_recipe_key_and_bad_shape(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\nlearning_rate = 0.1\n")
    r = run_kollm("train", "--recipe", str(recipe))
    assert r.returncode == 2 and "unknown recipe key [train] learning_rate" in r.stderr
    recipe.write_text("[model]\ndepth = 2\nn_heads = 3\n")
    r = run_kollm("train", "--recipe", str(recipe))
    assert r.returncode == 2 and "does not divide width" in r.stderr


def test_eval_rejects_missing_model(tmp_path):
    data = write_jsonl(tmp_path / "v.jsonl", korean_texts(3))
    r = run_kollm("eval", "--model", str(tmp_path), "--data", str(data))
    assert r.returncode == 2 and "no config.json" in r.stderr
