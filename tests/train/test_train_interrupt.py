"""Ctrl-C during training leaves a complete checkpoint that resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import korean_texts, run_kollm, write_jsonl

from kollm.train.checkpoint import latest_valid, read_trainer_state


@pytest.mark.slow  # 23 s on 2 cores
def test_ctrl_c_keeps_checkpoint_and_resume_continues(tmp_path, tiny_tokenizer):
    tok_dir = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok_dir)
    data = write_jsonl(tmp_path / "train.jsonl", korean_texts(80))
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--tokenizer", str(tok_dir), "--out", str(out), "--depth", "1",
            "--max-steps", "100000"]
    # A shell that starts jobs in the background (CI runners, `cmd &`) hands them SIGINT ignored, and Python
    # then never installs its Ctrl-C handler; restore the default so the child behaves like a terminal job.
    # Output goes to files so a full pipe can never stall the trainer.
    log = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "kollm.cli", *args], stdout=subprocess.DEVNULL, stderr=log,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    log.seek(0)
    err = log.read()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    state = read_trainer_state(latest_valid(out))
    assert state["step"] >= 20
    assert not [p for p in os.listdir(out / "checkpoint") if p.endswith(".tmp")]
    r = run_kollm("train", *args[1:-1], str(state["step"] + 10), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_trainer_state(latest_valid(out))["step"] == state["step"] + 10
