"""The private names and signatures of pinned libraries that kollm relies on (issue 22).

kollm subclasses or drives internals that a library may change in any release: lm-eval's `HFLM` (eval/fast.py,
eval/harness.py, eval/backends.py), datatrove's executor and MinHash steps (data/executors.py, data/dedup.py) and
transformers' module layout, forward keywords and cache interface (serve/forward.py, serve/kv.py,
serve/engine.py, eval/fast.py). Each test checks exactly those names, so an upgrade fails here, with the library
version and what to fix, instead of deep inside a run. Fast: tiny random models, nothing downloaded.
"""

from __future__ import annotations

import inspect
import json
from importlib.metadata import version

import pytest
import torch


def need(ok: bool, lib: str, what: str, where: str) -> None:
    """Fail with the library, its installed version, the name that changed and the kollm code to adapt."""
    if not ok:
        pytest.fail(f"{lib} {version(lib)}: {what} is gone or changed. kollm's {where} relies on it: adapt that "
                    f"code to the new {lib} (or keep {lib} at the version pyproject.toml pins) before upgrading.",
                    pytrace=False)


def params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)


def has_params(fn: object, names: list[str]) -> bool:
    """All `names` are named parameters of `fn` (a **kwargs that would swallow a renamed one does not count)."""
    return set(names) <= set(params(fn))


# --- lm-evaluation-harness ---------------------------------------------------------------------------------------
def test_lm_eval_internals(tiny_model_dir):
    import lm_eval
    import lm_eval.api.task
    import lm_eval.evaluator
    from lm_eval.models.api_models import TemplateAPI
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from kollm.eval.backends import make_backend
    from kollm.eval.harness import TASKS_DIR

    lib = "lm_eval"
    need(params(HFLM._loglikelihood_tokens)[:4] == ["self", "requests", "disable_tqdm", "override_bs"], lib,
         "HFLM._loglikelihood_tokens(requests, disable_tqdm, override_bs)",
         "eval/fast.py (FastHF overrides it and calls it positionally)")
    lm = make_backend(str(tiny_model_dir), "kollm").lm  # FastHF on the tiny model: HFLM's __init__ ran
    for attr in ("backend", "batch_size", "cache_hook", "device", "max_length", "rank", "softmax_dtype", "model"):
        need(hasattr(lm, attr), lib, f"HFLM.{attr}", "eval/fast.py (FastHF._loglikelihood_tokens/_score_groups)")
    need(params(lm.cache_hook.add_partial)[:3] == ["attr", "req", "res"], lib, "CacheHook.add_partial(attr, req, res)",
         "eval/fast.py")
    need(has_params(lm_eval.simple_evaluate, ["model", "tasks", "num_fewshot", "limit", "task_manager",
                                              "log_samples", "bootstrap_iters"]), lib,
         "simple_evaluate's keywords", "eval/harness.py run_tasks")
    need(hasattr(lm_eval.evaluator, "get_git_commit_hash")
         and "get_git_commit_hash()" in inspect.getsource(lm_eval.evaluator.simple_evaluate), lib,
         "lm_eval.evaluator.get_git_commit_hash, called by simple_evaluate through its module",
         "eval/harness.py quiet_git (keeps git's 'fatal: not a git repository' off the terminal)")
    need("datasets.load_dataset(" in inspect.getsource(lm_eval.api.task), lib,
         "tasks loading data with `datasets.load_dataset(...)` through the module",
         "eval/harness.py hub_errors (patches datasets.load_dataset for one-line offline errors)")
    from lm_eval.tasks._yaml_loader import load_yaml

    need("resolve_func" in params(load_yaml), lib, "lm_eval.tasks._yaml_loader.load_yaml(path, resolve_func=)",
         "eval/harness.py (_read_yaml, resolve_tasks)")
    need(has_params(TaskManager.__init__, ["include_path", "include_defaults"]), lib,
         "TaskManager(include_path=, include_defaults=)", "eval/harness.py task_manager")
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    need(isinstance(tm.all_tasks, list) and hasattr(tm.task_index.get("kollm_sentiment"), "yaml_path"), lib,
         "TaskManager.task_index[name].yaml_path and TaskManager.all_tasks", "eval/harness.py resolve_tasks")
    need(has_params(TemplateAPI.__init__, ["base_url", "model", "tokenizer", "tokenizer_backend", "add_bos_token",
                                           "batch_size", "max_retries", "timeout"]), lib,
         "LocalCompletionsAPI's keywords", "eval/backends.py _server")
    from lm_eval.utils import handle_non_serializable

    need(callable(handle_non_serializable), lib, "lm_eval.utils.handle_non_serializable", "eval/harness.py _clean")


# --- datatrove ---------------------------------------------------------------------------------------------------
def test_datatrove_internals(tmp_path):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.executor.base import PipelineExecutor
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupSignature
    from datatrove.utils.binaryio import read_tuples_from_file

    lib, where = "datatrove", "data/executors.py LocalRun (replaces LocalPipelineExecutor.run)"
    need(has_params(LocalPipelineExecutor.__init__, ["pipeline", "tasks", "workers", "logging_dir", "depends",
                                                     "start_method"]), lib, "LocalPipelineExecutor's keywords", where)
    need(params(PipelineExecutor._run_for_rank)[:2] == ["self", "rank"], lib,
         "PipelineExecutor._run_for_rank(rank) (runs one task: logs, stats, completion marker)", where)
    need("ranks" in params(PipelineExecutor.get_incomplete_ranks), lib, "get_incomplete_ranks(ranks)", where)
    need(callable(getattr(PipelineExecutor, "save_executor_as_json", None)), lib, "save_executor_as_json()", where)
    ex = LocalPipelineExecutor([], tasks=1, workers=1, logging_dir=str(tmp_path / "logs"), start_method="fork")
    for attr in ("_launched", "depends", "pipeline", "tasks", "workers", "logging_dir"):
        need(hasattr(ex, attr), lib, f"LocalPipelineExecutor.{attr}", where)
    need(callable(getattr(ex.logging_dir, "resolve_paths", None)), lib, "logging_dir.resolve_paths", where)

    where = "data/dedup.py (KoreanMinhashSignature, ExactSignature, FirstCopyCluster)"
    need(has_params(MinhashDedupSignature.__init__, ["output_folder", "config", "language"]), lib,
         "MinhashDedupSignature(output_folder, config, language=)", where)
    run = inspect.getsource(MinhashDedupSignature.run)
    need(params(MinhashDedupSignature.get_shingles)[1:] == ["text"] and "self.get_shingles(doc.text)" in run
         and params(MinhashDedupSignature.get_signature)[1:] == ["shingles"] and "self.get_signature(" in run, lib,
         "MinhashDedupSignature.run calling get_shingles(text) then get_signature(shingles)", where)
    cluster = MinhashDedupCluster(str(tmp_path / "in"), str(tmp_path / "out"))
    for attr in ("input_folder", "output_folder", "lines_to_buffer"):
        need(hasattr(cluster, attr), lib, f"MinhashDedupCluster.{attr}", where)
    need('.dups"' in inspect.getsource(MinhashDedupBuckets.run), lib, "the bucket step's *.dups files", where)
    need("lines_to_buffer" in params(read_tuples_from_file), lib, "read_tuples_from_file(f, fmt, lines_to_buffer=)",
         where)


def test_python_process_pool_internals():
    """executors.py kills a failed run's workers through ProcessPoolExecutor._processes (no public kill < 3.14)."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1)
    try:
        assert hasattr(pool, "_processes"), ("Python's ProcessPoolExecutor has no _processes: adapt "
                                             "data/executors.py LocalRun.run (kill of the other tasks on failure)")
    finally:
        pool.shutdown()


# --- transformers ------------------------------------------------------------------------------------------------
def tiny(family: str) -> torch.nn.Module:
    """A random 2-layer model of one of the families serve/forward.py runs itself (FAMILIES)."""
    import transformers as tf

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    cfg = {"llama": lambda: tf.LlamaConfig(**common),
           "qwen2": lambda: tf.Qwen2Config(**common),
           "qwen3": lambda: tf.Qwen3Config(**common),
           "gemma3": lambda: tf.Gemma3TextConfig(**common, sliding_window=4,
                                                 layer_types=["sliding_attention", "full_attention"])}[family]()
    cls = {"llama": tf.LlamaForCausalLM, "qwen2": tf.Qwen2ForCausalLM, "qwen3": tf.Qwen3ForCausalLM,
           "gemma3": tf.Gemma3ForCausalLM}[family]
    torch.manual_seed(0)
    return cls(cfg).eval()


class DuckCache:
    """What kollm's serve/kv.py SlotCache offers the model: `update` (returning the keys and values to attend
    over) and `get_seq_length`, nothing else."""

    def __init__(self) -> None:
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, kwargs: object = None,
               **_: object) -> tuple[torch.Tensor, torch.Tensor]:
        self.k[layer_idx] = torch.cat([self.k[layer_idx], key], -2) if layer_idx in self.k else key
        self.v[layer_idx] = torch.cat([self.v[layer_idx], value], -2) if layer_idx in self.v else value
        return self.k[layer_idx], self.v[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_transformers_module_layout(family):
    """The attributes serve/forward.py reads to run a family's weights with its own forward."""
    lib, where = "transformers", "serve/forward.py Forward (its own forward over transformers' weights)"
    model = tiny(family)
    cfg, inner = model.config, model.model
    for attr in ("embed_tokens", "rotary_emb", "layers", "norm"):
        need(hasattr(inner, attr), lib, f"{type(model).__name__}.model.{attr}", where)
    need(hasattr(model, "lm_head"), lib, "lm_head", where)
    for attr in ("model_type", "rms_norm_eps", "num_attention_heads", "num_key_value_heads", "hidden_size",
                 "num_hidden_layers", "max_position_embeddings", "vocab_size", "_attn_implementation"):
        need(hasattr(cfg, attr), lib, f"{type(cfg).__name__}.{attr}", where + ", serve/engine.py, serve/kv.py")
    need(callable(getattr(cfg, "get_text_config", None)), lib, "config.get_text_config()", "serve/engine.py")
    layer = inner.layers[0]
    norms = ["input_layernorm", "post_attention_layernorm"]
    norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"] if family == "gemma3" else []
    for attr in ("self_attn", "mlp", *norms):
        need(hasattr(layer, attr), lib, f"decoder layer .{attr}", where)
    attn, mlp = layer.self_attn, layer.mlp
    for attr in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling", *(("q_norm", "k_norm")
                                                                    if family in ("qwen3", "gemma3") else ())):
        need(hasattr(attn, attr), lib, f"self_attn.{attr}", where)
    for attr in ("gate_proj", "up_proj", "down_proj", "act_fn"):
        need(hasattr(mlp, attr), lib, f"mlp.{attr}", where)
    rope = params(inner.rotary_emb.forward)
    need(rope[:2] == ["x", "position_ids"] and (family != "gemma3" or "layer_type" in rope), lib,
         "rotary_emb.forward(x, position_ids[, layer_type])", where)
    if family == "gemma3":
        need(hasattr(attn, "layer_type") and hasattr(cfg, "layer_types") and hasattr(cfg, "sliding_window"), lib,
             "self_attn.layer_type, config.layer_types and config.sliding_window", where + " and serve/kv.py windows")


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_transformers_forward_and_cache_interface(family):
    """serve/engine.py calls the model with cache=, position_ids, 4D masks (a dict per layer type when there are
    sliding layers) and logits_to_keep; the model must use the cache only through update/get_seq_length. eval/fast.py
    reads `.cache` off the output and calls DynamicCache.batch_select_indices."""
    from transformers import DynamicCache

    lib = "transformers"
    model = tiny(family)
    need(has_params(type(model).forward, ["input_ids", "attention_mask", "position_ids", "cache", "use_cache",
                                          "logits_to_keep"]), lib,
         "forward(input_ids, attention_mask, position_ids, cache, use_cache, logits_to_keep)",
         "serve/engine.py and eval/fast.py (transformers 5.24 renamed past_key_values to cache)")
    need(callable(getattr(DynamicCache, "batch_select_indices", None)), lib, "DynamicCache.batch_select_indices",
         "eval/fast.py _score_groups")
    ids = torch.randint(0, 64, (1, 7))
    with torch.no_grad():
        full = model(ids, use_cache=True)
        need(isinstance(getattr(full, "cache", None), DynamicCache), lib, "the forward's output .cache",
             "eval/fast.py _score_groups")

        def masks(q: torch.Tensor, k: torch.Tensor) -> object:
            m = {"full_attention": k[None, :] <= q[:, None]}
            if family == "gemma3":
                m["sliding_attention"] = m["full_attention"] & (q[:, None] - k[None, :] < 4)
            m = {t: x[None, None] for t, x in m.items()}
            return m if family == "gemma3" else m["full_attention"]

        cache, pos = DuckCache(), torch.arange(7)
        try:  # a prompt of 6 tokens, then one decode step, through the duck-typed cache
            first = model(input_ids=ids[:, :6], position_ids=pos[None, :6], attention_mask=masks(pos[:6], pos[:6]),
                          cache=cache, use_cache=True, logits_to_keep=torch.tensor([5])).logits
            step = model(input_ids=ids[:, 6:], position_ids=pos[None, 6:], attention_mask=masks(pos[6:], pos),
                         cache=cache, use_cache=True).logits
        except (AttributeError, TypeError, RuntimeError) as e:
            need(False, lib, f"the cache interface ({type(e).__name__}: {e})",
                 "serve/kv.py SlotCache (a cache with only update(key, value, layer_idx, kwargs=) and get_seq_length)")
    need(len(cache.k) == model.config.num_hidden_layers, lib, "attention layers calling cache.update(k, v, layer_idx)",
         "serve/kv.py SlotCache")
    same = torch.allclose(first[0, -1], full.logits[0, 5], atol=1e-5) and torch.allclose(
        step[0, -1], full.logits[0, 6], atol=1e-5)
    need(same, lib, "the meaning of a 4D attention mask with cache= and position_ids= (logits differ from a plain "
         f"forward: {json.dumps(float((step[0, -1] - full.logits[0, 6]).abs().max()))})",
         "serve/engine.py _masks and serve/kv.py")
