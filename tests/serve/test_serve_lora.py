"""LoRA adapters served side by side (vLLM's contract): each adapter's greedy output is transformers + peft's, token
for token, alone and in batches mixed with the base and other adapters; the prefix cache never crosses adapters;
adapters load and unload at runtime over HTTP only when allowed; what kollm does not apply is refused by name.

Adapters are made here with peft, their lora_B set to seeded random values (peft starts B at zero, which would
leave the output unchanged and these tests unable to fail)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import openai
import pytest
import torch
from conftest import run_kollm
from live import running
from reference import engine_greedy_together, hf_greedy

from kollm.errors import KollmError
from kollm.serve.app import create_app
from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine, Token
from kollm.serve.hf_engine import HFEngine
from kollm.serve.keys import Guard
from kollm.serve.kv import PrefixStore
from kollm.serve.lora import parse_modules
from kollm.serve.sampling import SamplingParams

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SPECS = {  # different subsets, rsLoRA, and peft's per-module rank and alpha
    "ko-qv": dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    "ko-mlp": dict(r=8, lora_alpha=16, target_modules=["o_proj", "gate_proj", "up_proj", "down_proj"],
                   use_rslora=True),
    "ko-all": dict(r=4, lora_alpha=8, target_modules=ALL, rank_pattern={"down_proj": 8}, alpha_pattern={"k_proj": 32}),
}
TEXTS = ["대한민국의 수도는", "오늘 날씨가 좋아서 공원에", "한국어"]


def make_adapter(base_dir: Path, out: Path, seed: int, **lora: object) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(**lora))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.save_pretrained(out)
    return out


def peft_model(base_dir: Path, adapter: Path | None) -> torch.nn.Module:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    return base if adapter is None else PeftModel.from_pretrained(base, adapter).eval()


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_model_dir, out / name, i, **spec) for i, (name, spec) in enumerate(SPECS.items())}


@pytest.fixture(scope="module")
def references(tiny_model_dir, adapters) -> dict:
    return {None: peft_model(tiny_model_dir, None), **{n: peft_model(tiny_model_dir, d) for n, d in adapters.items()}}


@pytest.fixture(scope="module")
def engine(tiny_model_dir, adapters) -> Engine:
    engine = Engine.load(tiny_model_dir, config=EngineConfig(max_num_seqs=16, prefill_chunk=24, prefix_cache_mb=64))
    for name, path in adapters.items():
        engine.add_lora(name, str(path))
    return engine


def greedy(engine: Engine, ids: list[int], n: int, lora: str | None) -> list[int]:
    """Up to n greedy tokens, to EOS (a random adapter may well write EOS early: ignoring it would compare the
    engine against generate's min_new_tokens, which forbids EOS rather than ignoring it)."""
    p = SamplingParams(max_tokens=n, temperature=0)
    return [s.id for s in engine.generate(ids, p, lora) if isinstance(s, Token)]


def reference(engine: Engine, ids: list[int], n: int, model: torch.nn.Module) -> list[int]:
    return hf_greedy(engine, ids, n, model, until_eos=True)


def test_each_adapter_decodes_as_transformers_and_peft_and_changes_the_output(engine, references):
    prompts = [engine.encode(t) for t in TEXTS]
    base = [greedy(engine, ids, 12, None) for ids in prompts]
    assert base == [reference(engine, ids, 12, references[None]) for ids in prompts]
    for name in SPECS:
        got = [greedy(engine, ids, 12, name) for ids in prompts]
        assert got == [reference(engine, ids, 12, references[name]) for ids in prompts], name
        assert got != base, f"{name} does not change the output: the test could not fail"


def test_the_base_and_several_adapters_decode_in_the_same_steps(engine, references, monkeypatch):
    """Every (prompt, adapter) pair at once, the same prompt under the base and each adapter included: packed
    prefills and decode steps hold rows of different adapters, and each row gets peft's answer."""
    runner, seen = engine.runner, {"prefill": [], "decode": []}
    prefill, decode = runner.prefill, runner.decode

    def spy_prefill(segments, loras=None, every=False, **kw):  # every: a decode step that checks drafts (spec.py)
        seen["decode" if every else "prefill"].append({a.name if a else None for a in loras or []})
        return prefill(segments, loras, every, **kw)

    def spy_decode(tokens, positions, loras=None, **kw):
        seen["decode"].append({a.name if a else None for a in loras or []})
        return decode(tokens, positions, loras, **kw)

    def spy_mixed(tokens, positions, segments, loras=None, **kw):  # decode rows riding along with a prefill
        names = [a.name if a else None for a in loras or [None] * (len(tokens) + len(segments))]
        seen["decode"].append(set(names[:len(tokens)]))
        seen["prefill"].append(set(names[len(tokens):]))
        return mixed(tokens, positions, segments, loras, **kw)

    mixed = runner.mixed
    monkeypatch.setattr(runner, "prefill", spy_prefill)
    monkeypatch.setattr(runner, "decode", spy_decode)
    monkeypatch.setattr(runner, "mixed", spy_mixed)
    jobs = [(engine.encode(t), lora) for t in TEXTS for lora in [None, *SPECS]]
    got = engine_greedy_together(engine, [ids for ids, _ in jobs], [10] * len(jobs), [lora for _, lora in jobs],
                                 ignore_eos=False)
    assert got == [reference(engine, ids, 10, references[lora]) for ids, lora in jobs]
    assert max(map(len, seen["decode"])) == 1 + len(SPECS)  # one step decoded the base and every adapter
    assert max(map(len, seen["prefill"])) > 1  # one packed prefill held prompts of different adapters


def test_drafted_tokens_are_checked_under_each_rows_adapter(engine, references, monkeypatch):
    """Speculative decoding forced on: each row's drafts are checked under its own adapter (serve/spec.py), and
    every (prompt, adapter) pair still gets peft's greedy answer."""
    monkeypatch.setattr(engine.policy, "choose", lambda drafts, accepts: 4)
    before = engine.spec_stats.draft_tokens
    texts = [t + " " + t + " " + t for t in TEXTS]  # repeats: prompt lookup finds drafts
    jobs = [(engine.encode(t), lora) for t in texts for lora in [None, *SPECS]]
    got = engine_greedy_together(engine, [ids for ids, _ in jobs], [12] * len(jobs), [lora for _, lora in jobs],
                                 ignore_eos=False)
    assert got == [reference(engine, ids, 12, references[lora]) for ids, lora in jobs]
    assert engine.spec_stats.draft_tokens > before


def test_the_prefix_cache_is_keyed_on_the_adapter(engine, references):
    """A prefix computed under one adapter is reused under that adapter only, never under another or the base."""
    ids = engine.encode("맛있는 김치찌개를 만들려면 " * 4)[:40]  # past two 16-token blocks, new to this engine
    stats = engine._stats
    first = greedy(engine, ids, 6, "ko-qv")  # stores its KV under ko-qv
    longer = ids + first[:3]
    for lora in (None, "ko-mlp"):
        before = stats["prefix_hits"]
        assert greedy(engine, longer, 6, lora) == reference(engine, longer, 6, references[lora])
        assert stats["prefix_hits"] == before, f"{lora} reused ko-qv's KV"
    before = stats["prefix_hits"]
    assert greedy(engine, longer, 6, "ko-qv") == reference(engine, longer, 6, references["ko-qv"])
    assert stats["prefix_hits"] > before  # the same adapter does reuse it


def test_prefix_store_lookup_misses_under_another_salt():
    store, kv = PrefixStore(1 << 20), [(torch.zeros(1, 4), torch.zeros(1, 4))]
    ids = list(range(40))
    store.add(ids, kv, salt=7)
    assert store.lookup(ids + [1], salt=7)[0] == 40  # all of it: reuse ends where the prompts part
    assert store.lookup(ids + [1])[0] == 0 and store.lookup(ids + [1], salt=8)[0] == 0
    assert store.wants(ids) and not store.wants(ids, salt=7)
    store.forget(7)
    assert store.lookup(ids + [1], salt=7)[0] == 0 and not store.entries and not store.index and store.bytes == 0


# ---- what is refused ------------------------------------------------------------------------------------------
def _refused(engine: Engine, path: Path | str, needle: str) -> None:
    with pytest.raises(KollmError, match=needle) as e:
        engine.add_lora("bad", str(path))
    assert "\n" not in str(e.value) and "bad" not in engine.list_loras()


@pytest.mark.parametrize("lora, needle", [
    (dict(use_dora=True), "DoRA"),
    (dict(modules_to_save=["lm_head"]), "modules_to_save"),
    (dict(bias="lora_only"), "bias"),
    (dict(target_modules=["lm_head"]), "output head"),
    (dict(target_modules=["embed_tokens"]), "embeddings"),
])
def test_what_kollm_does_not_apply_is_refused_by_name(engine, tiny_model_dir, tmp_path, lora, needle):
    spec = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], **lora}
    _refused(engine, make_adapter(tiny_model_dir, tmp_path / "a", 0, **spec), needle)


def test_folders_that_are_not_adapters_for_this_model_are_refused(engine, tiny_model_dir, tmp_path, adapters):
    _refused(engine, tmp_path / "missing", "no such folder")
    _refused(engine, tiny_model_dir, "no adapter_config.json")
    weightless = shutil.copytree(adapters["ko-qv"], tmp_path / "weightless")
    (weightless / "adapter_model.safetensors").unlink()
    _refused(engine, weightless, "no adapter_model.safetensors")
    with pytest.raises(KollmError, match="already loaded"):
        engine.add_lora("ko-qv", str(adapters["ko-mlp"]))
    # an adapter trained on another model: same module names, other shapes
    from transformers import AutoModelForCausalLM, Qwen3Config

    other = tmp_path / "other-model"
    AutoModelForCausalLM.from_config(Qwen3Config(vocab_size=400, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                                 head_dim=16)).save_pretrained(other)
    _refused(engine, make_adapter(other, tmp_path / "for-other", 0, r=4, target_modules=["q_proj"]), "do not fit")


def test_another_base_model_name_is_a_warning_not_a_refusal(engine, adapters, tmp_path, capsys):
    moved = shutil.copytree(adapters["ko-qv"], tmp_path / "renamed")
    cfg = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "someone/other-model"}))
    engine.add_lora("renamed", str(moved))
    try:
        assert "trained on someone/other-model" in capsys.readouterr().err
    finally:
        assert engine.remove_lora("renamed") and not engine.remove_lora("renamed")


def test_a_model_on_transformers_forward_refuses_adapters(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Phi3Config

    tiny_tokenizer.save_pretrained(tmp_path / "phi3")
    vocab = len(AutoTokenizer.from_pretrained(tmp_path / "phi3"))
    AutoModelForCausalLM.from_config(Phi3Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                                pad_token_id=0)).save_pretrained(tmp_path / "phi3")
    engine = Engine.load(tmp_path / "phi3")
    assert engine.runner.forward is None
    _refused(engine, tmp_path / "anything", "transformers' forward")


def test_lora_flags_parse_and_bad_ones_fail_before_the_port_opens(tiny_model_dir, tmp_path):
    assert parse_modules(["a=/x/y", " b = z "]) == [("a", "/x/y"), ("b", "z")]
    for bad in (["a"], ["=x"], ["a=x", "a=y"]):
        with pytest.raises(KollmError):
            parse_modules(bad)
    r = run_kollm("serve", "--model", str(tiny_model_dir), "--lora", f"x={tmp_path / 'nowhere'}", timeout=120)
    assert r.returncode == 2 and "no such folder" in r.stderr and "Traceback" not in r.stderr
    from kollm.config import read_recipe
    from kollm.serve.config import ServeConfig

    (tmp_path / "r.toml").write_text('[serve]\nlora = ["sql=adapters/sql"]\nallow_runtime_lora = true\n')
    cfg = read_recipe(tmp_path / "r.toml", "serve", {"serve": ServeConfig})["serve"]
    assert cfg.lora == ["sql=adapters/sql"] and cfg.allow_runtime_lora


# ---- over HTTP, on both engines -------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["Engine", "HFEngine"])
def served(request, tiny_model_dir, adapters):
    engine = Engine.load(tiny_model_dir) if request.param == "Engine" else HFEngine.load(tiny_model_dir)
    engine.add_lora("ko-qv", str(adapters["ko-qv"]))
    engine.add_lora("ko-mlp", str(adapters["ko-mlp"]))
    app = create_app(engine, names=["base"], root=str(tiny_model_dir), allow_runtime_lora=True)
    with running(app) as url:
        yield url, engine


@pytest.fixture(scope="module")
def answers() -> dict:
    return {}  # the first engine's answers, which the second (peft, the reference) must repeat


def test_model_picks_the_adapter_and_both_engines_agree(served, answers, adapters):
    url, engine = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"base", "ko-qv", "ko-mlp"}
    assert models["ko-qv"].parent == "base" and models["ko-qv"].root == str(adapters["ko-qv"])
    assert models["base"].parent is None
    got = {}
    for model in ("base", "ko-qv", "ko-mlp"):
        r = client.completions.create(model=model, prompt=TEXTS[1], max_tokens=10, temperature=0)
        assert r.model == model  # answered under the adapter's name, as vLLM answers
        got[model] = r.choices[0].text
    assert got["ko-qv"] != got["base"] != got["ko-mlp"]
    got["chat"] = client.chat.completions.create(model="ko-mlp", messages=[{"role": "user", "content": "안녕?"}],
                                                 max_tokens=8, temperature=0).choices[0].message.content
    r = httpx.post(f"{url}/v1/completions", json={"model": "ko-qv", "prompt": TEXTS[0], "max_tokens": 2,
                                                   "echo": True, "logprobs": 1, "temperature": 0}).json()
    got["echo_lp"] = [round(x, 3) for x in r["choices"][0]["logprobs"]["token_logprobs"][1:]]
    base_lp = httpx.post(f"{url}/v1/completions", json={"prompt": TEXTS[0], "max_tokens": 2, "echo": True,
                                                        "logprobs": 1, "temperature": 0}).json()
    assert got["echo_lp"] != [round(x, 3) for x in base_lp["choices"][0]["logprobs"]["token_logprobs"][1:]]

    async def together() -> list[str]:  # concurrent clients on the base and both adapters
        aclient = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
        calls = [aclient.completions.create(model=m, prompt=t, max_tokens=10, temperature=0)
                 for t in TEXTS for m in ("base", "ko-qv", "ko-mlp")]
        return [r.choices[0].text for r in await asyncio.gather(*calls)]

    got["together"] = asyncio.run(together())
    assert got["together"][3:6] == [got["base"], got["ko-qv"], got["ko-mlp"]]
    assert 'kollm:lora_requests_total{lora_name="ko-qv"}' in httpx.get(f"{url}/metrics").text
    if answers:
        assert got == answers  # the batching engine and peft agree, token for token
    answers.update(got)


def test_runtime_load_and_unload(served, adapters, tiny_model_dir, tmp_path):
    url, engine = served

    def post(path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{url}/v1/{path}", json=body, timeout=60)

    def complete(model: str) -> httpx.Response:
        return post("completions", {"model": model, "prompt": TEXTS[0], "max_tokens": 6, "temperature": 0})

    assert complete("ko-all").status_code == 404
    r = post("load_lora_adapter", {"lora_name": "ko-all", "lora_path": str(adapters["ko-all"])})
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'ko-all' added successfully."
    assert "ko-all" in [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
    assert complete("ko-all").json()["model"] == "ko-all"
    bad = [
        ({"lora_name": "ko-all", "lora_path": str(adapters["ko-all"])}, 400, "already been loaded"),
        ({"lora_name": "x", "lora_path": str(tmp_path / "missing")}, 400, "no such folder"),
        ({"lora_name": "x", "lora_path": str(tiny_model_dir)}, 400, "no adapter_config.json"),
        ({"lora_name": "base", "lora_path": str(adapters["ko-all"])}, 400, "base model's name"),
        ({"lora_name": "", "lora_path": str(adapters["ko-all"])}, 400, "lora_name"),
        ({"lora_name": "x"}, 400, "lora_path"),
        ({"lora_name": "x", "lora_path": "y", "load_inplace": True}, 400, "load_inplace"),
    ]
    for body, status, needle in bad:
        r = post("load_lora_adapter", body)
        assert r.status_code == status and needle in r.json()["error"]["message"], (body, r.text)
    r = post("unload_lora_adapter", {"lora_name": "nope"})
    assert r.status_code == 404 and "cannot be found" in r.json()["error"]["message"]
    r = post("unload_lora_adapter", {"lora_name": "ko-all"})
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'ko-all' removed successfully."
    r = complete("ko-all")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_a_running_request_finishes_with_an_adapter_unloaded_under_it(served, adapters):
    url, engine = served
    httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "brief", "lora_path": str(adapters["ko-all"])})
    body = {"model": "brief", "prompt": TEXTS[1], "max_tokens": 30, "temperature": 0, "ignore_eos": True}
    whole = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    text, unloaded = [], None
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                text.append(json.loads(line[6:])["choices"][0]["text"])
                if unloaded is None:  # running now: unload its adapter (the reference engine waits for it)
                    unloaded = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "brief"}, timeout=60)
    assert unloaded.status_code == 200 and "brief" not in engine.list_loras()
    assert "".join(text) == whole


def test_runtime_loading_is_404_unless_allowed_and_keys_apply(engine, adapters):
    with running(create_app(engine)) as url:
        r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": str(adapters["ko-qv"])})
        assert r.status_code == 404 and "error" in r.json()
        assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "ko-qv"}).status_code == 404
        assert "ko-qv" in engine.list_loras()
    with running(create_app(engine, Guard("secret", None), allow_runtime_lora=True)) as url:
        body = {"lora_name": "keyed", "lora_path": str(adapters["ko-qv"])}
        r = httpx.post(f"{url}/v1/load_lora_adapter", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        auth = {"Authorization": "Bearer secret"}
        assert httpx.post(f"{url}/v1/load_lora_adapter", json=body, headers=auth).status_code == 200
        assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "keyed"}, headers=auth).status_code == 200
