"""Few-shot tasks on lm-evaluation-harness: same scores as `lm_eval --model hf`, KV reuse exact, reports, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_kollm, with_window

# nothing in these tests may reach the hub (run_kollm passes os.environ on to the CLI)
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

from kollm.eval.harness import TASKS_DIR  # noqa: E402


@pytest.fixture(scope="module")
def long_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny kollm checkpoint with a 512-token window (RoPE extends), so few-shot prompts fit untruncated."""
    return with_window(tiny_model_dir, tmp_path_factory.mktemp("long") / "model", 512)


def kollm_only_tasks():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def hf_scores(model_dir: Path, task: str, shots: int, limit: int) -> dict:
    """What `lm_eval --model hf --model_args pretrained=DIR,add_bos_token=True --include_path ...` gives."""
    import lm_eval

    from kollm.runtime import pick_device, pick_dtype

    device = pick_device()  # the device and dtype kollm eval picks, so both sides run the same maths
    args = f"pretrained={model_dir},add_bos_token=True,dtype={str(pick_dtype(device)).removeprefix('torch.')}"
    res = lm_eval.simple_evaluate(model="hf", model_args=args, device=str(device),
                                  tasks=[task], num_fewshot=shots, limit=limit, batch_size=4,
                                  task_manager=kollm_only_tasks(), log_samples=False, bootstrap_iters=1000)
    return res["results"][task]


def assert_same_scores(ours: dict, theirs: dict,
                       metrics: tuple[str, ...] = ("acc,none", "acc_norm,none", "f1,none")) -> None:
    for m in metrics:
        assert abs(ours[m] - theirs[m]) < 1e-6, (m, ours[m], theirs[m])


@pytest.mark.slow  # 49 s on 2 cores
def test_every_shipped_task_loads_and_scores():
    """All seven kollm tasks (the kollm_ko group) build prompts, few-shot contexts and metrics under lm-eval."""
    import lm_eval

    res = lm_eval.simple_evaluate(model="dummy", tasks=["kollm_ko"], num_fewshot=2, limit=2,
                                  task_manager=kollm_only_tasks(), log_samples=False, bootstrap_iters=10)
    names = {"kollm_sentiment", "kollm_topic", "kollm_sts", "kollm_qa", "kollm_query_correction",
             "kollm_review_summary", "kollm_promo_copy"}
    assert names <= set(res["results"])
    assert "pass,none" in res["results"]["kollm_promo_copy"]
    for task in ("kollm_sentiment", "kollm_topic", "kollm_sts"):  # macro-F1 beside accuracy, as kobest_* have it
        assert 0.0 <= res["results"][task]["f1,none"] <= 1.0 and "acc,none" in res["results"][task]
    assert "char_edit_distance,none" in res["results"]["kollm_query_correction"]


@pytest.mark.slow  # 16 s on 2 cores
def test_kollm_eval_matches_lm_eval_hf_on_a_kollm_checkpoint(long_model_dir, tmp_path):
    out = tmp_path / "run"
    r = run_kollm("eval", "--model", str(long_model_dir), "--tasks", "kollm_sentiment", "--shots", "0,2",
                  "--limit", "8", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert [(run["shots"], run["backend"], run["add_bos_token"]) for run in doc["runs"]] == [(0, "kollm", True),
                                                                                           (2, "kollm", True)]
    ours = doc["runs"][1]["lm_eval"]["results"]["kollm_sentiment"]
    assert_same_scores(ours, hf_scores(long_model_dir, "kollm_sentiment", 2, 8))
    report = (out / "report.md").read_text()
    assert "smoke sets, not benchmarks" in report and "HyperCLOVA" in report and "0-shot" in report
    assert (out / "kshot_kollm_sentiment.png").stat().st_size > 1000 and (out / "models.png").is_file()



def test_eval_outside_a_git_repository_prints_no_git_errors(tiny_model_dir, tmp_path, monkeypatch):
    """lm-eval records `git describe` of the cwd in its results; outside a repository git's `fatal: not a git
    repository` must not reach the user's terminal (issue 22)."""
    cwd = tmp_path / "not-a-repo"
    cwd.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above the cwd is found either
    if shutil.which("git"):
        probe = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=cwd, capture_output=True, text=True)
        assert probe.returncode != 0 and "fatal:" in probe.stderr  # the condition the test is about
    r = run_kollm("eval", "--model", str(tiny_model_dir), "--tasks", "kollm_sentiment", "--limit", "2",
                  "--out", str(tmp_path / "o"), cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fatal:" not in r.stdout and "fatal:" not in r.stderr, r.stderr[-2000:]
    assert (tmp_path / "o" / "results.json").is_file()

def test_shared_context_kv_reuse_equals_hf_loglikelihoods(long_model_dir):
    """FastHF's per-request log-likelihoods equal HFLM's: multi-token choices, a 7-way group, an over-long context."""
    from lm_eval.models.huggingface import HFLM

    from kollm.eval.backends import make_backend

    fast = make_backend(str(long_model_dir), "kollm").lm
    hf = HFLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=4, add_bos_token=True)
    topics = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]
    shots = "뉴스 제목: 반도체 수출 석 달째 증가\n분야: 경제\n\n뉴스 제목: 대표팀 결승 진출\n분야: 스포츠\n\n"
    contexts = [shots + f"뉴스 제목: {t}\n분야:" for t in ("국회 예산안 통과", "새 스마트폰 공개", "폭염 경보")]
    contexts.append("서울 " * 400)  # longer than the window: truncated the HFLM way
    reqs = [((c, " " + k), *hf._encode_pair(c, " " + k)) for c in contexts for k in topics]
    ours, theirs = fast._loglikelihood_tokens(reqs, disable_tqdm=True), hf._loglikelihood_tokens(reqs, True)
    assert len(ours) == len(theirs) == len(reqs)
    for (a, ga), (b, gb) in zip(ours, theirs, strict=True):
        assert abs(a - b) < 1e-4 * max(1.0, abs(b)) and ga == gb


@pytest.mark.slow
def test_kollm_eval_matches_lm_eval_hf_on_gemma(gemma_dir, tmp_path):
    out = tmp_path / "run"
    r = run_kollm("eval", "--model", str(gemma_dir), "--tasks", "kollm_sts", "--shots", "1", "--limit", "10",
                  "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    ours = json.loads((out / "results.json").read_text())["runs"][0]["lm_eval"]["results"]["kollm_sts"]
    assert_same_scores(ours, hf_scores(gemma_dir, "kollm_sts", 1, 10))


def test_compare_rebuilds_the_report_across_runs(tmp_path):
    from kollm.files import write_json

    def run(model: str, acc: float) -> dict:
        res = {"results": {"kollm_sentiment": {"alias": "kollm_sentiment", "acc,none": acc, "acc_stderr,none": 0.05}},
               "higher_is_better": {"kollm_sentiment": {"acc": True}}}
        return {"kollm_eval": 1, "tasks": ["kollm_sentiment"], "shots": [0, 5], "limit": 8,
                "runs": [{"model": model, "backend": "kollm", "shots": k, "lm_eval": res} for k in (0, 5)]}

    write_json(tmp_path / "a" / "results.json", run("small", 0.5))
    write_json(tmp_path / "b" / "results.json", run("big", 0.75))
    r = run_kollm("eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "both"))
    assert r.returncode == 0, r.stderr
    report = (tmp_path / "both" / "report.md").read_text()
    assert "| small | 0.5000 ± 0.0500 | 0.5000 ± 0.0500 |" in report
    assert "| big | 0.7500 ± 0.0500 | 0.7500 ± 0.0500 |" in report
    assert (tmp_path / "both" / "kshot_kollm_sentiment.png").is_file()


def test_report_shows_accuracy_and_macro_f1_for_multiple_choice(tmp_path):
    """acc stays the headline (plots, HyperCLOVA's NSMC measure); macro-F1 gets its own table, marked as such and
    without ± (lm-eval computes no stderr for it), and a dashed line in the k-shot plot. QA's f1 is not macro."""
    from kollm.eval.report import collect, markdown, write_report

    vals = {"acc,none": 0.5, "acc_stderr,none": 0.1, "f1,none": 1 / 3, "f1_stderr,none": "N/A"}
    res = {"results": {"kollm_sentiment": vals, "kollm_qa": {"exact_match,none": 0.25, "exact_match_stderr,none": 0.1,
                                                             "f1,none": 0.5, "f1_stderr,none": 0.1}},
           "higher_is_better": {"kollm_sentiment": {"acc": True, "f1": True},
                                "kollm_qa": {"exact_match": True, "f1": True}},
           "configs": {"kollm_sentiment": {"output_type": "multiple_choice"},
                       "kollm_qa": {"output_type": "generate_until"}}}
    doc = {"kollm_eval": 1, "tasks": ["kollm_sentiment"], "shots": [0, 2], "limit": 8,
           "runs": [{"model": m, "backend": "kollm", "shots": k, "lm_eval": res} for m in ("작은모델", "b")
                    for k in (0, 2)]}
    table, *_ = collect([doc])
    assert table[("kollm_sentiment", "f1")]["b"][2] == (1 / 3, None)
    report = markdown([doc], [])
    sentiment = report.split("## kollm_sentiment")[1]
    assert "**acc**" in sentiment and "**f1**: macro-F1" in sentiment and "| b | 0.3333 | 0.3333 |" in sentiment
    assert "macro-F1" not in report.split("## kollm_qa")[1].split("## ")[0]
    import warnings

    from kollm.eval.report import _hangul_rc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report([doc], tmp_path)
    assert (tmp_path / "kshot_kollm_sentiment.png").stat().st_size > 1000 and (tmp_path / "models.png").is_file()
    if _hangul_rc():  # a Korean font is installed (fonts-nanum): the Korean model name is drawn, not boxes
        assert not [w for w in caught if "missing from font" in str(w.message)], [str(w.message) for w in caught]


def test_a_kollm_task_reads_the_public_format_from_a_local_file(tmp_path):
    """NSMC's own layout (id, document, label; tab-separated) through the kollm_sentiment loader."""
    from kollm.eval.tasks.utils import load_sentiment

    rows = [f"{i}\t{'재밌다' if i % 2 else '별로'} {i}\t{i % 2}" for i in range(40)]
    (tmp_path / "nsmc.txt").write_text("id\tdocument\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    dd = load_sentiment(data_files=str(tmp_path / "nsmc.txt"), version=1.0)
    assert len(dd["fewshot"]) == 16 and len(dd["test"]) == 24
    assert dd["test"][0] == {"id": 16, "text": "별로 16", "label": 0}



BAD_TASK_DATA = [  # file name, content, what the one-line error says
    ("broken.jsonl", '{"text": "좋아요", "label": 1}\n{"text": "별로", "label": \n', "cannot read it as .jsonl"),
    ("arrays.jsonl", "[1, 2]\n[3, 4]\n", "one JSON object per line"),
    ("empty.jsonl", "", "is empty"),
    ("ragged.csv", 'text,label\n"좋아요,1\n', "cannot read it as .csv"),
    ("no_label.jsonl", "".join(json.dumps({"id": i, "text": f"문장 {i}"}) + "\n" for i in range(20)),
     "item with id 0 has no field 'label'; kollm_sentiment items need text (or document) and label"),
    ("word_label.jsonl", "".join(json.dumps({"text": f"문장 {i}", "label": "긍정"}) + "\n" for i in range(20)),
     "has a bad value (ValueError"),
]


@pytest.mark.parametrize(("name", "content", "says"), BAD_TASK_DATA, ids=[b[0] for b in BAD_TASK_DATA])
def test_bad_task_data_is_a_kollm_error(tmp_path, name, content, says):
    from kollm.errors import KollmError
    from kollm.eval.tasks.utils import load_sentiment

    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(KollmError) as e:
        load_sentiment(data_files=str(tmp_path / name), version=1.0)
    assert says in str(e.value) and name in str(e.value) and "\n" not in str(e.value)


def test_every_task_loader_names_its_fields():
    from kollm.eval.tasks import utils

    loaders = {n.removeprefix("load_") for n in dir(utils) if n.startswith("load_")}
    assert loaders == set(utils.FIELDS)


def test_bad_task_data_is_one_line_from_the_cli(tiny_model_dir, tmp_path):
    bad = tmp_path / "qa.jsonl"
    items = [{"id": f"q{i}", "context": "본문", "question": "질문"} for i in range(20)]  # no answers
    bad.write_text("".join(json.dumps(d) + "\n" for d in items))
    msg = one_line_error(run_kollm("eval", "--model", str(tiny_model_dir), "--tasks", f"kollm_qa={bad}",
                                   "--out", str(tmp_path / "o")))
    assert "item with id 'q0' has no field 'answers'" in msg and "kollm_qa items need" in msg

def one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("kollm: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


@pytest.mark.slow  # 21 s on 2 cores
def test_unknown_task_is_one_line(tiny_model_dir, tmp_path):
    msg = one_line_error(run_kollm("eval", "--model", str(tiny_model_dir), "--tasks", "kollm_sentimen",
                                   "--out", str(tmp_path)))
    assert "unknown task 'kollm_sentimen'" in msg and "kollm_sentiment" in msg


def test_unreadable_yaml_is_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: broken\ndoc_to_text: [unclosed\n")
    msg = one_line_error(run_kollm("eval", "--model", str(tiny_model_dir), "--tasks", str(bad),
                                   "--out", str(tmp_path / "o")))
    assert "cannot read task YAML" in msg and "bad.yaml" in msg


def test_model_folder_without_tokenizer_is_one_line(tiny_model_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / f, bare / f)
    msg = one_line_error(run_kollm("eval", "--model", str(bare), "--tasks", "kollm_sentiment",
                                   "--out", str(tmp_path / "o")))
    assert "has no tokenizer" in msg


def test_unreachable_url_is_one_line(tiny_model_dir, tmp_path):
    msg = one_line_error(run_kollm("eval", "--model", "http://127.0.0.1:9/v1", "--tokenizer", str(tiny_model_dir),
                                   "--tasks", "kollm_sentiment", "--out", str(tmp_path / "o"),
                                   timeout=120))
    assert "cannot reach the model server at http://127.0.0.1:9/v1" in msg


def test_hub_dataset_while_offline_is_one_line_naming_it(tiny_model_dir, tmp_path):
    msg = one_line_error(run_kollm("eval", "--model", str(tiny_model_dir), "--tasks",
                                   "kollm_sentiment=someone/nsmc-copy", "--out", str(tmp_path / "o")))
    assert "'someone/nsmc-copy'" in msg and "data_files" in msg


@pytest.mark.slow
def test_lm_eval_builtin_hub_task_while_offline_is_one_line(tiny_model_dir, tmp_path):
    """lm-eval's own kobest_copa reads skt/kobest_v1 from the hub: offline, one line naming it."""
    msg = one_line_error(run_kollm("eval", "--model", str(tiny_model_dir), "--tasks", "kobest_copa",
                                   "--out", str(tmp_path / "o")))
    assert "'skt/kobest_v1'" in msg


@pytest.mark.slow  # 30 s on 2 cores
def test_server_backend_scores_like_in_process(long_model_dir, tmp_path):
    """`kollm eval --model URL` (lm-eval's local-completions against `kollm serve`) == `kollm eval --model DIR`,
    BOS included: kollm's tokenizers prepend it only when asked, and kollm asks on every backend."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
    from live import running

    from kollm.serve.app import create_app
    from kollm.serve.engine import Engine

    args = ("--tasks", "kollm_sentiment,kollm_sts", "--shots", "2", "--limit", "6")
    r = run_kollm("eval", "--model", str(long_model_dir), *args, "--out", str(tmp_path / "local"))
    assert r.returncode == 0, r.stderr[-2000:]
    from lm_eval.api.instance import Instance

    from kollm.eval.backends import make_backend

    reqs = [Instance("loglikelihood", {}, ("리뷰: 배송이 빠르고 좋아요\n감정:", " 긍정"), 0),
            Instance("loglikelihood", {}, ("한국의 수도는", " 서울"), 1)]
    with running(create_app(Engine.load(long_model_dir))) as url:
        r = run_kollm("eval", "--model", f"{url}/v1", "--tokenizer", str(long_model_dir), *args,
                      "--out", str(tmp_path / "served"))
        served_lp = make_backend(f"{url}/v1", tokenizer=str(long_model_dir)).lm.loglikelihood(reqs)
    assert r.returncode == 0, r.stderr[-2000:]
    local_lp = make_backend(str(long_model_dir)).lm.loglikelihood(reqs)  # with BOS; without, these differ by ~0.15
    for (a, _), (b, _) in zip(served_lp, local_lp, strict=True):
        assert abs(a - b) < 1e-4
    local, served = (json.loads((tmp_path / d / "results.json").read_text())["runs"][0] for d in ("local", "served"))
    assert served["backend"] == "local-completions" and served["add_bos_token"] is True
    for task in ("kollm_sentiment", "kollm_sts"):
        assert_same_scores(served["lm_eval"]["results"][task], local["lm_eval"]["results"][task])
