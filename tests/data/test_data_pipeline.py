"""The whole `kollm data run`: stats and removal reasons, dedup, PII, token shards, kill and resume."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kollm.data.config import DataConfig
from kollm.data.pipeline import run_pipeline
from kollm.data.report import inspect_removed
from kollm.data.shards import open_shards
from kollm.special_tokens import PII_PLACEHOLDERS

WORDS = (
    "서울 부산 김치 한글 태양계 바둑 커피 지하철 도서관 축구 한강 반도체 학교 시장 병원 공원 기차 바다 산 강 "
    "역사 문화 과학 경제 정치 음악 미술 영화 소설 시인 학생 선생님 회사 공장 농부 어부 요리 여행 날씨 계절 "
    "사람들 아이들 가족 친구 이웃 도시 마을 나라 세계 우주"
).split()
VERBS = ["좋아한다", "만들었다", "찾아갔다", "설명한다", "기록했다", "바꾸었다", "연구한다", "소개했다", "지켜본다"]


def article(i: int) -> str:
    import random

    rng = random.Random(i)
    return "\n".join(
        f"{rng.choice(WORDS)}의 {rng.choice(WORDS)}와 {rng.choice(WORDS)}는 {rng.choice(WORDS)}에서 "
        f"{rng.choice(WORDS)}을 {rng.choice(VERBS)}. {rng.choice(WORDS)} {rng.randrange(1000)}."
        for _ in range(6)
    )


def write_corpus(folder: Path, files: int = 4, per_file: int = 30) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        rows = []
        for j in range(per_file):
            i = f * per_file + j
            rows.append({"id": f"a{i}", "text": article(i)})
        rows.append({"id": f"copy{f}", "text": article(f * per_file)})  # exact copy
        rows.append({"id": f"near{f}", "text": article(f * per_file + 1) + "\n끝."})
        rows.append({"id": f"pii{f}", "text": article(999 + f) + "\n문의: 010-1234-5678, hong@naver.com 입니다."})
        rows.append({"id": f"short{f}", "text": "짧은 글"})
        rows.append({"id": f"en{f}", "text": "This page is mostly English text without Korean. " * 10})
        lines = [json.dumps(r, ensure_ascii=False) for r in rows] + ["{broken json"]
        (folder / f"part-{f}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_clean(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "clean").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh]
    return rows


def small_cfg(inp: Path, out: Path, **kw) -> DataConfig:
    base = {"inputs": [str(inp)], "out": str(out), "workers": 1, "min_chars": 50, "fineweb2_filters": False}
    return DataConfig(**{**base, **kw})


def tiny_tokenizer(folder: Path, corpus: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|endoftext|>", *PII_PLACEHOLDERS])
    tok.train([str(p) for p in sorted(corpus.glob("*.jsonl"))], trainer)
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    # a foreign tokenizer: no BOS, "<|endoftext|>" ends documents because its own config says so
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))


def test_pipeline_end_to_end(tmp_path):
    inp, out = tmp_path / "raw", tmp_path / "out"
    write_corpus(inp)
    tiny_tokenizer(tmp_path / "tok", inp)
    run_pipeline(small_cfg(inp, out, workers=2, tokenizer=str(tmp_path / "tok")))
    rows = read_clean(out)
    ids = {r["id"] for r in rows}
    assert len(ids) == len(rows)
    assert not any(i.startswith(("copy", "near", "short", "en")) for i in ids)  # removed, each for its reason
    assert {f"a{i}" for i in range(120)} <= ids and {f"pii{f}" for f in range(4)} <= ids
    pii = next(r for r in rows if r["id"] == "pii0")
    assert "<|phone|>" in pii["text"] and "<|email|>" in pii["text"] and "010-1234" not in pii["text"]
    by_id = {r["id"]: r for r in rows}
    # each cluster keeps its first copy; a near cluster is only noted when it holds more than exact copies
    assert by_id["a0"]["exact_dedup_cluster_size"] == 2 and "near_dedup_cluster_size" not in by_id["a0"]
    assert by_id["a1"]["near_dedup_cluster_size"] == 2 and "exact_dedup_cluster_size" not in by_id["a1"]

    stats = json.loads((out / "stats.json").read_text())["stages"]
    by = {s["stage"]: s for s in stats}
    assert by["read"]["docs_out"] == 4 * 35 and by["read"]["removed"] == {"malformed_json": 4}
    assert by["quality"]["removed"] == {"length:too_short": 4, "hangul:low_hangul_share": 4}
    assert by["exact_dedup"]["removed"] == {"duplicate": 4} and by["near_dedup"]["removed"] == {"duplicate": 4}
    assert by["pii"]["masked"] == {"<|phone|>": 4, "<|email|>": 4}
    assert by["near_dedup"]["docs_out"] == len(rows) == 124
    assert (out / "funnel.png").read_bytes()[:4] == b"\x89PNG"
    shown = inspect_removed(out, per_reason=2)
    assert set(shown) == {"quality/length:too_short", "quality/hangul:low_hangul_share", "exact_dedup/duplicate",
                          "near_dedup/duplicate"}
    assert all(r["id"].startswith("short") for r in shown["quality/length:too_short"])

    shards = open_shards(out / "tokens")
    assert shards.num_docs == len(rows) and by["tokens"]["tokens"] == shards.num_tokens
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    first = shards.shards[0].doc(0)
    assert first[-1] == eos and "".join(tok.decode(first[:-1].tolist()).split()) == "".join(rows[0]["text"].split())
    phone_id = tok.token_to_id("<|phone|>")
    assert sum(int((s.tokens == phone_id).sum()) for s in shards.shards) == 4


def test_empty_and_switched_off_stages(tmp_path):
    inp, out = tmp_path / "raw", tmp_path / "out"
    write_corpus(inp, files=1, per_file=5)
    run_pipeline(small_cfg(inp, out, quality=False, exact_dedup=False, near_dedup=False, mask_pii=False,
                           output_format="parquet"))
    import pyarrow.parquet as pq

    table = pq.read_table(next((out / "clean").glob("*.parquet")))
    assert table.num_rows == 10  # everything readable, nothing filtered
    stages = [s["stage"] for s in json.loads((out / "stats.json").read_text())["stages"]]
    assert stages == ["read", "normalize", "repair"]


def _run_cli(inp: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kollm.cli", "data", "run", "--data", str(inp), "--out", str(out), "--workers", "1",
         "--recipe", str(Path(__file__).parent / "resume_recipe.toml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def test_kill_and_resume_gives_identical_output(tmp_path):
    inp = tmp_path / "raw"
    write_corpus(inp, files=6, per_file=40)
    recipe = Path(__file__).parent / "resume_recipe.toml"
    assert recipe.is_file()
    full = tmp_path / "full"
    assert _run_cli(inp, full).wait(timeout=300) == 0
    part = tmp_path / "part"
    proc = _run_cli(inp, part)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((part / "logs" / "clean" / "completions").glob("*"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as when a node dies
    proc.wait()
    assert not (part / "logs" / "report" / "completions" / "00000").exists(), "run finished before the kill"
    assert _run_cli(inp, part).wait(timeout=300) == 0
    assert read_clean(part) == read_clean(full)
    assert json.loads((part / "stats.json").read_text()) == json.loads((full / "stats.json").read_text())


@pytest.mark.parametrize("bad", [b"\x00\x01binary", b""])
def test_bad_files_never_crash(tmp_path, bad):
    inp, out = tmp_path / "raw", tmp_path / "out"
    write_corpus(inp, files=1, per_file=5)
    (inp / "zz.jsonl").write_bytes(bad)
    run_pipeline(small_cfg(inp, out, near_dedup=False))
    assert len(read_clean(out)) == 7  # 5 articles + near copy (near dedup off) + pii doc
