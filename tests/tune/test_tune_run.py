"""`kollm tune` end to end on the tiny model: LoRA and full runs from the CLI, the adapter in plain PEFT format,
--merge, continued pretraining's bits-per-byte, and kill -9 then --resume equal to an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_kollm

PAIRS = [("유모챠 추천", "유모차 추천"), ("로봇청소기 추쳔", "로봇청소기 추천"), ("오렌지 쥬스", "오렌지 주스"),
         ("무선이어 폰", "무선 이어폰"), ("희안한 선물", "희한한 선물"), ("노트북 가방", "노트북 가방"),
         ("겨울 패딩 추쳔", "겨울 패딩 추천"), ("케찹 대용량", "케첩 대용량")]


def studio_rows(path: Path, n: int = 48) -> Path:
    rows = [{"inputs": {"query": q}, "expected": a} for q, a in (PAIRS * (n // len(PAIRS) + 1))[:n]]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe(path: Path, **kw) -> Path:
    base = {"steps": 12, "batch_tokens": 256, "seq_len": 128, "eval_every": 6, "val_fraction": 0.25,
            "checkpoint_every": 3, "max_new_tokens": 8, "template": "검색어: {{query}}\n교정:", **kw}
    lines = ["[tune]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in base.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_lora_run_writes_a_peft_adapter_and_a_merged_folder(tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    r = run_kollm("tune", "--model", str(tiny_model_dir), "--data", str(studio_rows(tmp_path / "d.jsonl")),
                  "--out", str(out), "--recipe", str(recipe(tmp_path / "r.toml", lr=3e-3)), "--merge")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "held-out bits/byte" in r.stdout and "exact_match" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["metric"] == "exact_match" and m["steps"] == 12
    assert m["best"]["val_bpb"] < m["before"]["val_bpb"]  # it learned something about the held-out answers
    assert (out / "loss.png").stat().st_size > 5_000
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 16
    assert set(cfg["target_modules"]) >= {"q_proj", "v_proj", "down_proj"}
    ids = list(range(3, 30))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    plain = logits(base, ids)
    with_adapter = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    tuned = logits(with_adapter, ids)
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged"), dtype=torch.float32).eval()
    assert not torch.allclose(plain, tuned, atol=1e-3)  # the adapter does something
    torch.testing.assert_close(logits(merged, ids), tuned, atol=1e-4, rtol=1e-4)
    assert (out / "merged" / "tokenizer.json").is_file()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_bpb" in r] == [0, 6, 12]

    # the adapter as `kollm serve --lora qc=OUT/adapter` serves it: transformers + peft's greedy answer
    from kollm.serve.engine import Engine, Token
    from kollm.serve.sampling import SamplingParams
    from kollm.special_tokens import encode_with_bos

    engine = Engine.load(tiny_model_dir)
    engine.add_lora("qc", str(out / "adapter"))
    prompt = encode_with_bos(engine.tokenizer, "검색어: 유모챠 추천\n교정:")
    served = [t.id for t in engine.generate(prompt, SamplingParams(max_tokens=8, temperature=0), "qc")
              if isinstance(t, Token)]

    def utf8(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # the engine never emits broken UTF-8
        owed = 0
        for t in input_ids[0, len(prompt):].tolist():
            owed = engine.utf8.step(owed, t)
        return engine.utf8.mask(scores, owed)

    want = with_adapter.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8, do_sample=False, top_p=None,
                                 top_k=None, temperature=None, logits_processor=[utf8])[0, len(prompt):].tolist()
    eos = engine.tokenizer.eos_token_id
    assert served and served == (want[: want.index(eos)] if eos in want else want)


@pytest.mark.slow
def test_full_run_writes_a_plain_model_and_refuses_to_overwrite(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "full"
    args = ["tune", "--model", str(tiny_model_dir), "--data", str(studio_rows(tmp_path / "d.jsonl")), "--out",
            str(out), "--recipe", str(recipe(tmp_path / "r.toml", steps=6)), "--method", "full", "--lr", "1e-3"]
    r = run_kollm(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    model = AutoModelForCausalLM.from_pretrained(str(out / "model"))
    assert (out / "model" / "tokenizer.json").is_file() and model.config.vocab_size > 0
    again = run_kollm(*args)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.slow
def test_text_rows_report_held_out_bits_per_byte(tmp_path, tiny_model_dir):
    from conftest import korean_texts, write_jsonl

    data = write_jsonl(tmp_path / "docs.jsonl", korean_texts(40))
    r = run_kollm("tune", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "cpt"),
                  "--recipe", str(recipe(tmp_path / "r.toml", lr=2e-3, template="")))
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "cpt" / "metrics.json").read_text())
    assert m["metric"] == "loss" and "exact_match" not in m["best"]
    assert m["best"]["val_bpb"] < m["before"]["val_bpb"]


def test_bad_input_is_one_line(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": 1}\n', encoding="utf-8")
    r = run_kollm("tune", "--model", str(tiny_model_dir), "--data", str(bad), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and f"{bad}:2:" in r.stderr and "Traceback" not in r.stderr
    r = run_kollm("tune", "--model", str(tmp_path), "--data", str(bad), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not a Hugging Face model folder" in r.stderr
    r = run_kollm("tune", "--model", str(tiny_model_dir), "--data", str(bad), "--method", "qlora")
    assert r.returncode == 2 and "--method lora" in r.stderr


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_kill9_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model_dir):
    data, rec = studio_rows(tmp_path / "d.jsonl"), recipe(tmp_path / "r.toml", steps=18, lr=3e-3)

    def cmd(out: Path, resume: bool = False) -> list[str]:
        return [sys.executable, "-m", "kollm.cli", "tune", "--model", str(tiny_model_dir), "--data", str(data),
                "--out", str(out), "--recipe", str(rec)] + (["--resume"] if resume else [])

    whole = tmp_path / "whole"
    assert subprocess.run(cmd(whole), capture_output=True).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = cut / "metrics.jsonl", time.monotonic() + 300
    while time.monotonic() < deadline:  # kill once step 8 is logged: checkpoint at 6, so steps 7-8 are redone
        if metrics.is_file() and any(json.loads(x).get("step", 0) >= 8 and "loss" in x
                                     for x in metrics.read_text().splitlines() if x.strip()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = subprocess.run(cmd(cut, resume=True), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed at step" in r.stdout
    a, b = _adapter(whole), _adapter(cut)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if '"loss"' in x]
    assert steps == list(range(1, 19))  # the log has each step once, redone steps included once
    assert json.loads((whole / "metrics.json").read_text())["best"] == \
        json.loads((cut / "metrics.json").read_text())["best"]


@pytest.mark.parametrize("method", ["lora"])
def test_the_recipe_section_is_checked(tmp_path, tiny_model_dir, method):
    bad = tmp_path / "r.toml"
    bad.write_text("[tune]\nbatch_tokens = 8\n", encoding="utf-8")
    r = run_kollm("tune", "--model", str(tiny_model_dir), "--recipe", str(bad), "--method", method,
                  "--data", str(studio_rows(tmp_path / "d.jsonl")), "--template", "{{query}}")
    assert r.returncode == 2 and "batch_tokens" in r.stderr
