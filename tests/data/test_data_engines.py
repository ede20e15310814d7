"""The same pipeline on other engines (Ray, Slurm), and how a local run behaves when things go wrong:
a failing task, a parent killed on its own, a second run on the same folder, the console."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_data_pipeline import read_clean, small_cfg, write_corpus

import kollm.data.steps
from kollm.data.pipeline import run_pipeline
from kollm.errors import KollmError


@pytest.mark.slow  # ~50 s: starting Ray and one actor per task dominate
def test_ray_executor_gives_the_local_output(tmp_path):
    ray = pytest.importorskip("ray")
    write_corpus(tmp_path / "raw", files=2, per_file=10)
    run_pipeline(small_cfg(tmp_path / "raw", tmp_path / "local", workers=2))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_pipeline(small_cfg(tmp_path / "raw", tmp_path / "ray", workers=2, executor="ray"))
    finally:
        ray.shutdown()
    assert read_clean(tmp_path / "ray") == read_clean(tmp_path / "local")
    assert len(read_clean(tmp_path / "local")) == 2 * 10 + 2  # the articles and the two PII documents


def test_slurm_executor_writes_a_dependent_job_chain(tmp_path, monkeypatch):
    """datatrove writes each step's sbatch script and calls `sbatch`; a stand-in records the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch-calls"
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "Submitted batch job $(wc -l < {calls})"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    write_corpus(tmp_path / "raw", files=3, per_file=5)
    out = tmp_path / "out"
    run_pipeline(small_cfg(tmp_path / "raw", out, workers=2, executor="slurm", slurm_partition="cpu"))

    steps = ["clean", "exact-buckets", "exact-clusters", "near-buckets", "near-clusters", "dedup", "report"]
    arrays = {"clean": "0-2%2", "near-buckets": "0-13%2", "dedup": "0-2%2"}
    for name in steps:
        script = (out / "logs" / name / "launch_script.slurm").read_text()
        assert "#SBATCH --partition=cpu" in script and f"#SBATCH --job-name=kollm-{name}" in script
        assert f"#SBATCH --array={arrays.get(name, '0-0%2')}" in script
        assert f"launch_pickled_pipeline {out}/logs/{name}/executor.pik" in script
        assert f"source {sys.prefix}/bin/activate" in script  # the jobs run this same environment
    # one job per step plus datatrove's stats-merge job after each, every step after the one before
    jobs = calls.read_text().splitlines()
    assert len(jobs) == 2 * len(steps)
    step_jobs = [i + 1 for i, line in enumerate(jobs) if "RUN_OFFSET" in line]
    assert len(step_jobs) == len(steps) and "--dependency" not in jobs[step_jobs[0] - 1]
    for before, job in zip(step_jobs, step_jobs[1:], strict=False):
        assert f"--dependency=afterok:{before}" in jobs[job - 1]
    assert not (out / "clean").exists()  # nothing ran here


@pytest.mark.parametrize("workers", [1, 2])
def test_failing_task_is_one_line_error_naming_its_log(tmp_path, monkeypatch, capfd, workers):
    def boom(text: str, counts: object = None) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(kollm.data.steps, "mask_pii", boom)  # forked workers inherit the patch
    write_corpus(tmp_path / "raw", files=2, per_file=3)
    with pytest.raises(KollmError) as err:
        run_pipeline(small_cfg(tmp_path / "raw", tmp_path / "out", workers=workers))
    msg = str(err.value)
    m = re.fullmatch(r"data step 'clean' task (\d) failed: RuntimeError: boom \(log: (.+\.log)\)", msg)
    assert m, msg
    assert Path(m[2]) == tmp_path / "out" / "logs" / "clean" / "logs" / f"task_0000{m[1]}.log"
    assert "Traceback" in Path(m[2]).read_text()  # the details are in the task's log ...
    assert "Traceback" not in capfd.readouterr().err  # ... not on the console


def test_console_is_quiet_unless_verbose(tmp_path):
    write_corpus(tmp_path / "raw", files=2, per_file=3)
    recipe = str(Path(__file__).parent / "resume_recipe.toml")
    for verbose in (False, True):
        out = tmp_path / f"out-{verbose}"
        args = ["--data", str(tmp_path / "raw"), "--out", str(out), "--workers", "2", "--recipe", recipe]
        res = subprocess.run([sys.executable, "-m", "kollm.cli", "data", "run", *args] + ["--verbose"] * verbose,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert re.search(r"clean: 100%\|.*2/2 \[", res.stderr)  # a progress bar per step
        assert ("| INFO" in res.stderr) == verbose
        assert "INFO" in (out / "logs" / "clean" / "logs" / "task_00000.log").read_text()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killing_only_the_parent_stops_its_workers_and_resume_is_identical(tmp_path):
    inp = tmp_path / "raw"
    write_corpus(inp, files=6, per_file=40)
    recipe = str(Path(__file__).parent / "resume_recipe.toml")

    def cli(out: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "kollm.cli", "data", "run", "--data", str(inp), "--out", str(out),
             "--workers", "2", "--recipe", recipe],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    full = tmp_path / "full"
    assert cli(full).wait(timeout=300) == 0
    part = tmp_path / "part"
    proc = cli(part)
    try:
        deadline = time.time() + 240
        workers: list[int] = []
        while time.time() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            if len(workers) >= 2 and list((part / "logs" / "clean" / "completions").glob("*")):
                break
            time.sleep(0.02)
        assert len(workers) >= 2, "the run ended before its workers could be seen"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as `kill -9 PID` does
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(map(_alive, workers)):
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "workers outlived their parent"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not (part / "logs" / "report" / "completions" / "00000").exists(), "run finished before the kill"
    assert cli(part).wait(timeout=300) == 0
    assert read_clean(part) == read_clean(full)


def test_second_run_on_a_busy_folder_is_refused(tmp_path):
    write_corpus(tmp_path / "raw", files=1, per_file=3)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # as a running (or orphaned) run holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        with pytest.raises(KollmError, match=r"in use by another `kollm data run` \(pid 4242\)"):
            run_pipeline(small_cfg(tmp_path / "raw", out))
    run_pipeline(small_cfg(tmp_path / "raw", out))  # free again once the holder is gone
    assert len(read_clean(out)) == 4
