"""`kollm tokenizer train` from the command line, and its one-line errors (exit code 2)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from kollm.cli import main

TEXT = "서울은 대한민국의 수도이다. 학교에서 친구들과 공부했습니다.\n오늘 날씨가 맑다."


def kollm(*args):
    """Run the real entry point in-process (a subprocess per case costs ~5 s of imports)."""
    err = io.StringIO()
    argv, sys.argv = sys.argv, ["kollm", *map(str, args)]
    try:
        with redirect_stderr(err):
            main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return SimpleNamespace(returncode=code, stderr=err.getvalue())


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"text": f"{TEXT} {i}번"}, ensure_ascii=False) + "\n" for i in range(40)))
    return p


@pytest.mark.parametrize("method", ["bbpe", "morpheme-bbpe", "unigram"])
def test_train_each_method(tmp_path, corpus, method):
    out = tmp_path / "tok"
    r = kollm("tokenizer", "train", "--method", method, "--vocab-size", 300, "--special-token", "<|tool|>",
              "--threads", 1, "--sample-size", 30, "--out", out, "--data", corpus)
    assert r.returncode == 0, r.stderr
    auto = AutoTokenizer.from_pretrained(str(out))
    assert "<|tool|>" in auto.get_vocab() and len(auto) <= 300
    assert auto.decode(auto.encode(TEXT)) == TEXT


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "wordpiece"], "unknown tokenizer method"),
        (["--vocab-size", "100"], "vocab size 100 is smaller"),
        (["--sample-size", "-1"], "must be >= 0"),
    ],
)
def test_bad_options(tmp_path, corpus, args, needle):
    r = kollm("tokenizer", "train", *args, "--out", tmp_path / "o", "--data", corpus)
    assert r.returncode == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "is empty"),
        (b'{"text": "   "}\n', "no document with text"),
        (b"\xff\xfe\x00\x01binary", "binary"),
        ("한국어".encode("cp949"), "not valid UTF-8"),
    ],
)
def test_bad_files(tmp_path, content, needle):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    r = kollm("tokenizer", "train", "--out", tmp_path / "o", "--data", p)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_file_real_process(tmp_path):
    code = "from kollm.cli import main; main()"
    args = ["tokenizer", "train", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "nope.jsonl")]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
