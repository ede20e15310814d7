"""The GPU paths CI never runs (its machines have no GPU): bf16 training and tuning, NCCL + FSDP2, CUDA serving.

    python bench/gpu_check.py [--out DIR] [--cpu]

Each check runs kollm's own code on the GPU and compares it with a reference it can be held to (fp32, one
process, transformers); one table at the end, every number in OUT/gpu_check.json, a failing check's traceback in
the log and the next check still runs. `--cpu` runs the same script on a CPU (float32) to check the script itself.
Models are made here (a byte-level BPE tokenizer and a kollm model trained on the shipped sample corpus): nothing
is downloaded. With one GPU, FSDP2 runs over a one-rank NCCL group (the sharding, mixed-precision policy, DCP
checkpoint and collectives, not traffic between GPUs). The last run's table: bench/results/gpu_check.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from kollm.data.sources import read_texts, sample_corpus_files
from kollm.files import read_jsonl
from kollm.model import ModelConfig
from kollm.model.hf import causal_lm_from_pretrained, load_hf_causal_lm, load_kollm_from_hf
from kollm.model.loss import head_cross_entropy
from kollm.runtime import pick_device, pick_dtype
from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
from kollm.train import TrainConfig
from kollm.train.distributed import DistInfo
from kollm.train.loop import Trainer
from kollm.train.mfu import measure_matmul_peak

RESULTS: dict[str, dict] = {}  # check -> its numbers, written to OUT/gpu_check.json
OUT: Path | None = None


def check(name: str) -> Callable:
    def wrap(fn: Callable) -> Callable:
        def run(*a: object) -> object:
            t0 = time.perf_counter()
            print(f"\n=== {name}", flush=True)
            try:
                out = fn(*a)
                res = out if isinstance(out, dict) else {}
                ok = res.pop("ok", True)
            except Exception as e:  # noqa: BLE001 - a check's failure is a result; the next check still runs
                traceback.print_exc()
                res, ok, out = {"error": f"{type(e).__name__}: {e}"[:300]}, False, None
            res.update(ok=bool(ok), seconds=round(time.perf_counter() - t0, 1))
            RESULTS[name] = res
            print(f"--- {name}: {'PASS' if ok else 'FAIL'} {json.dumps(res, ensure_ascii=False)}", flush=True)
            if OUT is not None:  # after every check: a run cut off by a time limit keeps what it measured
                (OUT / "gpu_check.json").write_text(json.dumps(RESULTS, ensure_ascii=False, indent=1, default=str))
            return out
        return run
    return wrap


class OneRankFSDP(DistInfo):
    """A one-rank process group that still shards: FSDP2's code path on a machine with one GPU."""

    @property
    def sharded(self) -> bool:
        return True


RECIPE = dict(batch_size=32, micro_batch_size=16, max_steps=40, warmup_steps=5, log_every=1, eval_every_steps=20,
              eval_every_s=1e9, checkpoint_every_steps=20, keep_checkpoints=5, sample_tokens=8, tensorboard=False,
              val_max_docs=40)


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r}


@check("runtime: device, dtype, matmul peak")
def runtime(dev: torch.device) -> dict:
    dtype = pick_dtype(dev)
    peak = measure_matmul_peak(dev, dtype)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"device": name, "dtype": str(dtype), "torch": torch.__version__, "matmul_tflops": round(peak / 1e12, 1),
            "ok": dev.type == "cpu" or dtype == torch.bfloat16}


@check("fused head loss under bf16 autocast vs fp32 cross-entropy")
def fused_loss(dev: torch.device) -> dict:
    torch.manual_seed(0)
    n, d, v = 4096, 512, 32768
    h = torch.randn(n, d, device=dev, requires_grad=True)
    w = (torch.randn(v, d, device=dev) * d**-0.5).requires_grad_()
    t = torch.randint(0, v, (n,), device=dev)
    t[::7] = -100
    with torch.autocast(dev.type, dtype=pick_dtype(dev), enabled=pick_dtype(dev) != torch.float32):
        got = head_cross_entropy(h, w, t)
    got.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy(h.double() @ w.double().T, t, ignore_index=-100)
    ref.backward()

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        return F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()

    dl = abs(got.item() - ref.item())
    res = {"loss": round(got.item(), 5), "ref_fp64": round(ref.item(), 5), "abs_diff": f"{dl:.2e}",
           "grad_h_cos": round(cos(gh, h.grad), 6), "grad_w_cos": round(cos(gw, w.grad), 6),
           "loss_dtype": str(got.dtype)}
    res["ok"] = dl < 1e-2 and res["grad_h_cos"] > 0.999 and res["grad_w_cos"] > 0.999
    return res


def make_tokenizer(work: Path, texts: list[str]) -> object:
    return save_tokenizer(train_tokenizer(texts, TokenizerConfig(method="bbpe", vocab_size=4096)), work / "tok")


def trainer(work: Path, name: str, tok: object, texts: list[str], info: DistInfo | None = None, resume: bool = False,
            **over: object) -> Trainer:
    cfg = replace(TrainConfig(), **{**RECIPE, **over})
    model = ModelConfig(depth=4, max_seq_len=256)
    return Trainer(model, cfg, tok, texts[200:], texts[:200], work / name, resume=resume, info=info)


@check("train: one process, bf16 autocast, checkpoint, kill/resume, HF export")
def train_one(dev: torch.device, work: Path, tok: object, texts: list[str]) -> dict:
    r = trainer(work, "one", tok, texts).run()
    info = json.loads((work / "one" / "config.json").read_text())
    one = losses(work / "one")
    # resume: drop the last checkpoint and redo steps 21-40 from step 20's
    shutil.copytree(work / "one", work / "resumed")
    shutil.rmtree(work / "resumed" / "checkpoint" / "step-00000040")
    (work / "resumed" / "metrics.jsonl").unlink()
    trainer(work, "resumed", tok, texts, resume=True).run()
    again = losses(work / "resumed")
    drift = max(abs(again[s] - one[s]) for s in range(21, 41))
    # the exported HF folder computes what kollm's model computes (both float32, TF32 off for the comparison)
    hf = causal_lm_from_pretrained(r.final_dir, torch.float32).to(dev).eval()
    mine = load_kollm_from_hf(r.final_dir).to(dev).eval()
    ids = torch.tensor([tok.encode(texts[0])[:128]], device=dev)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        diff = (hf(ids).logits - mine(ids)).abs().max().item()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    res = {"device": info.get("device"), "dtype": info.get("dtype"), "loss_first": round(r.first_loss, 4),
           "loss_last": round(r.final_loss, 4), "val_bpb": round(r.best_val_bpb, 4),
           "tok_per_s": round(r.tokens_per_s), "mfu": round(r.mfu, 3), "resume_max_loss_diff": f"{drift:.2e}",
           "hf_vs_kollm_max_logit_diff": f"{diff:.2e}"}
    res["ok"] = (r.final_loss < 0.8 * r.first_loss and math.isfinite(r.best_val_bpb) and drift < 2e-2
                 and diff < 1e-3 and info.get("dtype") == str(pick_dtype(dev)))
    return res


@check("train: FSDP2 over a one-rank NCCL group vs one process; its checkpoint resumes unsharded")
def train_fsdp(dev: torch.device, work: Path, tok: object, texts: list[str]) -> dict:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        t = torch.ones(4, device=dev)
        dist.all_reduce(t)
        r = trainer(work, "fsdp", tok, texts, info=OneRankFSDP(0, 1, 0, dev)).run()
    finally:
        dist.destroy_process_group()
    one, sharded = losses(work / "one"), losses(work / "fsdp")
    first, diff = abs(one[1] - sharded[1]), max(abs(one[s] - sharded[s]) for s in one)
    manifest = json.loads((work / "fsdp" / "checkpoint" / "step-00000020" / "manifest.json").read_text())
    shutil.rmtree(work / "fsdp" / "checkpoint" / "step-00000040")
    (work / "fsdp" / "metrics.jsonl").unlink()
    trainer(work, "fsdp", tok, texts, resume=True).run()
    resumed = losses(work / "fsdp")
    rdiff = max(abs(resumed[s] - sharded[s]) for s in range(21, 41))
    res = {"backend": backend, "loss_last": round(r.final_loss, 4), "one_process_loss_last": round(one[40], 4),
           "step1_loss_diff": f"{first:.2e}", "vs_one_process_max_loss_diff": f"{diff:.2e}",
           "checkpoint_world": manifest.get("world"), "resumed_unsharded_max_loss_diff": f"{rdiff:.2e}",
           "all_reduce": t.tolist()[0]}
    # FSDP2 computes in bf16 weights (MixedPrecisionPolicy), one process in fp32 weights under autocast: equal at
    # step 1 up to bf16 rounding; the runs then drift apart as bf16 training does, so the last loss is held to 3%
    res["ok"] = (first < 1e-2 and abs(r.final_loss - one[40]) < 0.03 * one[40] and rdiff < 5e-2
                 and r.final_loss < 0.8 * r.first_loss)
    return res


@check("tune: LoRA under bf16 autocast, adapter loads in peft, merged folder")
def tune_lora(dev: torch.device, work: Path, texts: list[str]) -> dict:
    from peft import PeftModel

    from kollm.tune.config import TuneConfig
    from kollm.tune.loop import tune

    model_dir = work / "one" / "final"
    rows = []
    for line in texts[:400]:
        words = line.split()[:4]
        if len(words) >= 2:
            rows.append({"prompt": f"검색어: {''.join(words)}\n교정:", "completion": " " + " ".join(words)})
    data = work / "tune.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = TuneConfig(data=[str(data)], steps=60, eval_every=30, batch_tokens=4096, seq_len=128, lr=2e-3,
                     val_max=40, max_new_tokens=16, merge=True)
    r = tune(cfg, model_dir, work / "tuned", show=False)
    base, _ = load_hf_causal_lm(model_dir, dev)
    peft = PeftModel.from_pretrained(base, str(r.adapter)).to(dev)
    merged, tok = load_hf_causal_lm(r.merged, dev)
    ids = torch.tensor([tok.encode(rows[0]["prompt"])], device=dev)
    with torch.no_grad():
        a, b = peft(ids).logits.float(), merged(ids).logits.float()
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    res = {"metric": r.metric, "before": r.before, "best": r.best, "best_step": r.best_step,
           "tok_per_s": round(r.tokens_per_s), "peft_vs_merged_argmax_agree": round(agree, 3),
           "logged_rows": sum(1 for _ in read_jsonl(work / "tuned" / "metrics.jsonl"))}
    res["ok"] = r.best["val_loss"] < 0.9 * r.before["val_loss"] and agree > 0.95
    return res


def hf_greedy(eng: object, ids: list[int], n: int) -> list[int]:
    """transformers' greedy generate of one prompt, masked as the engine masks invalid UTF-8 (as tests/serve do)."""

    def utf8(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        owed = 0
        for t in input_ids[0, len(ids):].tolist():
            owed = eng.utf8.step(owed, t)
        return eng.utf8.mask(scores, owed)

    dev = next(eng.model.parameters()).device
    with torch.no_grad():
        o = eng.model.generate(torch.tensor([ids], device=dev), attention_mask=torch.ones(1, len(ids), device=dev,
                               dtype=torch.long), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                               logits_processor=[utf8])
    return o[0, len(ids):].tolist()


@check("serve: engine greedy (batched, speculative and not) vs transformers generate, one prompt at a time")
def serve(dev: torch.device, work: Path, texts: list[str]) -> dict:
    from kollm.serve.config import EngineConfig
    from kollm.serve.engine import Engine, Token
    from kollm.serve.sampling import SamplingParams

    prompts = [t[:40] for t in texts[200:216]]
    out: dict = {}
    for spec in ("off", "ngram"):
        eng = Engine.load(work / "one" / "final", config=EngineConfig(speculative=spec, max_num_seqs=16))
        try:
            ids = [eng.encode(p) for p in prompts]
            n = 32
            ban = {e: -100.0 for e in eng.sampler.eos_ids}  # as generate's min_new_tokens: no EOS at all
            p = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, logit_bias=ban)
            got: dict[int, list[int]] = {}

            def run(i: int, eng: Engine = eng, ids: list = ids, got: dict = got, p: SamplingParams = p) -> None:
                got[i] = [s.id for s in eng.generate(ids[i], p) if isinstance(s, Token)]

            secs = []
            for _ in range(2):  # the second round is warm (CUDA kernels loaded, allocator grown)
                ths = [threading.Thread(target=run, args=(i,)) for i in range(len(ids))]
                t0 = time.perf_counter()
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
                secs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run(0)
            one = n / (time.perf_counter() - t0)
            ref = [hf_greedy(eng, x, n) for x in ids]
            same = sum(got[i] == ref[i] for i in range(len(ids)))
            prefix = sum(next((k for k in range(n) if got[i][k] != ref[i][k]), n) for i in range(len(ids)))
            out[spec] = {"identical": f"{same}/{len(ids)}", "tokens_to_first_difference": f"{prefix}/{n * len(ids)}",
                         "tok_per_s_16_streams": [round(n * len(ids) / s) for s in secs],
                         "tok_per_s_one_stream": round(one), "summary": eng.summary()[:160], "_same": same,
                         "_tokens": got}
        finally:
            eng.close()
    agree = sum(out["off"]["_tokens"][i] == out["ngram"]["_tokens"][i] for i in range(len(prompts)))
    res = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in out.items()}
    res["speculative_equals_off"] = f"{agree}/{len(prompts)}"
    res["cudnn_attention"] = torch.backends.cuda.cudnn_sdp_enabled()  # off: runtime.configure_varying_shapes
    # bf16 batched and one-at-a-time can part at near-ties; most must agree, and all on CPU fp32
    need = len(prompts) if dev.type == "cpu" else len(prompts) * 3 // 4
    res["ok"] = out["off"]["_same"] >= need and agree >= need
    return res


@check("eval: bits-per-byte on the GPU (bf16) vs the CPU (fp32)")
def eval_bpb(dev: torch.device, work: Path, texts: list[str]) -> dict:
    from kollm.eval.bpb import hf_bits_per_byte

    val = texts[:60]
    gpu_model, tok = load_hf_causal_lm(work / "one" / "final", dev)
    cpu_model, _ = load_hf_causal_lm(work / "one" / "final", torch.device("cpu"))
    with torch.no_grad():
        a = hf_bits_per_byte(gpu_model, tok, val, 256)
        b = hf_bits_per_byte(cpu_model.float(), tok, val, 256)
    return {"bpb_device": round(a, 4), "bpb_cpu_fp32": round(b, 4), "rel_diff": f"{abs(a - b) / b:.2e}",
            "ok": abs(a - b) / b < 1e-2}


def train_speed(dev: torch.device, work: Path, tok: object, texts: list[str], compile: bool) -> dict:
    big = dev.type == "cuda"
    steps = (60 if compile else 30) if big else 3  # compiling takes the first steps
    cfg = replace(TrainConfig(), **{**RECIPE, "batch_size": 64 if big else 4, "micro_batch_size": 32 if big else 4,
                                     "max_steps": steps, "eval_every_steps": 0, "checkpoint_every_steps": 0,
                                     "checkpoint_every_s": 1e9, "sample_tokens": 0, "compile": compile})
    model = ModelConfig(depth=12 if big else 2, max_seq_len=1024 if big else 128)
    name = f"speed-{'compiled' if compile else 'eager'}"
    r = Trainer(model, cfg, tok, texts[200:], texts[:50], work / name).run()
    info = json.loads((work / name / "config.json").read_text())
    rows = [r for r in read_jsonl(work / name / "metrics.jsonl") if "tok_s" in r]
    last = sorted(rows[len(rows) // 2:], key=lambda x: x["tok_s"])[len(rows[len(rows) // 2:]) // 2]  # median, 2nd half
    return {"params": info["params"], "run_tok_per_s": round(r.tokens_per_s), "run_mfu": round(r.mfu, 3),
            "steady_tok_per_s": last["tok_s"], "steady_mfu": last["mfu"],
            "peak_tflops": round(r.matmul_peak_flops / 1e12, 1), "ok": math.isfinite(r.final_loss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu-check")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (to check this script)")
    a = ap.parse_args()
    dev = torch.device("cpu") if a.cpu else pick_device()
    if dev.type != "cuda" and not a.cpu:
        raise SystemExit("no CUDA GPU here; pass --cpu to run the checks on the CPU")
    global OUT
    OUT = out = Path(a.out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    texts = read_texts(sample_corpus_files())
    t0 = time.perf_counter()
    runtime(dev)
    fused_loss(dev)
    tok = make_tokenizer(work, texts)
    # the speed runs first: loading a transformers model turns cuDNN attention off for the rest of the process
    # (runtime.configure_varying_shapes), and training is measured with torch's own choice
    for compile in (False, True):  # a depth-12 model on 1024-token rows, steady tok/s and MFU vs the bf16 peak
        check(f"train speed, depth 12, {'torch.compile' if compile else 'eager'}")(train_speed)(
            dev, work, tok, texts, compile)
    train_one(dev, work, tok, texts)
    train_fsdp(dev, work, tok, texts)
    tune_lora(dev, work, texts)
    serve(dev, work, texts)
    eval_bpb(dev, work, texts)
    print("\n| check | result | seconds |\n|---|---|---|")
    for k, v in RESULTS.items():
        print(f"| {k} | {'PASS' if v['ok'] else 'FAIL'} | {v['seconds']} |")
    print(f"\n{sum(v['ok'] for v in RESULTS.values())}/{len(RESULTS)} passed in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
