"""End to end, as a user runs it: the default quickstart on a tiny time budget."""

from __future__ import annotations

import json
import math

import pytest
from conftest import REPO, run_kollm


@pytest.fixture(scope="module")
def quickstart_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs")
    r = run_kollm("quickstart", "--out", str(out), "--time-budget", "20", "--no-serve",
                  "--recipe", str(REPO / "tests" / "quickstart_tiny.toml"))
    assert r.returncode == 0, r.stderr[-3000:]
    # output piped to a file (as under CI or nohup): plain progress lines, no redraws, no bpb=inf before the
    # first evaluation
    assert "\r" not in r.stderr and "bpb=inf" not in r.stderr
    return out, r.stdout


def test_quickstart_learns_and_reports(quickstart_out):
    out, stdout = quickstart_out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["final_loss"] < summary["train"]["first_loss"] - 0.5
    bpb = json.loads((out / "eval.json").read_text())["val_bits_per_byte"]
    assert math.isfinite(bpb) and 0 < bpb < 8.0
    assert f"{bpb:.4f}" in stdout and "tokens/s" in stdout
    assert (out / "train" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(summary["samples"]) == 3 and all(s.strip() for s in summary["samples"])
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / "train" / "model" / f).is_file()
    # the sample corpus is the default data, read by `kollm data run`'s blocks: several registers, none dropped
    # as duplicates en masse, the held-out split written where `kollm eval` can score it again
    assert summary["corpus"]["train_docs"] > 100 and summary["corpus"]["val_docs"] > 5
    assert (out / "corpus" / "stats.json").is_file() and list((out / "corpus" / "clean").glob("*.jsonl.gz"))
    assert sum(1 for _ in (out / "train" / "val.jsonl").open()) == summary["corpus"]["val_docs"]


def test_generate_and_eval_commands_on_the_result(quickstart_out):
    out, _ = quickstart_out
    model = out / "train" / "model"
    r = run_kollm("serve", "generate", "--model", str(model), "--prompt", "오늘 날씨가", "--max-new-tokens", "8")
    assert r.returncode == 0 and r.stdout.startswith("오늘 날씨가"), r.stderr
    r = run_kollm("eval", "--model", str(model), "--data", str(out / "train" / "val.jsonl"))
    assert r.returncode == 0, r.stderr
    reported = float(r.stdout.split("val bits-per-byte:")[1].split()[0])
    expected = json.loads((out / "eval.json").read_text())["val_bits_per_byte"]
    assert abs(reported - expected) < 1e-3
