"""`kollm export gguf` of an imported Gemma 3 (270M): llama.cpp tokenizes like the HF tokenizer and decodes the
same greedy tokens as transformers."""

from __future__ import annotations

import json
import shutil

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kollm.errors import KollmError
from kollm.interop import export_gguf

pytest.importorskip("xllamacpp", reason="llama.cpp tests need xllamacpp (pip install -e '.[test]')")
from llamacpp_server import hf_greedy, llama_server  # noqa: E402 - after the skip check
from test_interop_llamacpp import KOREAN_SET  # noqa: E402

pytestmark = pytest.mark.slow

# derived differently (scores from merge ranks) or not written (add_sep_token: false is llama.cpp's default)
SKIP = {"tokenizer.ggml.scores", "tokenizer.ggml.add_sep_token"}
PROMPTS = ["대한민국의 수도는", "한글은 자음과 모음을 모아", "오늘 날씨가 좋아서 친구와 함께"]


@pytest.fixture(scope="module")
def hf(gemma_dir):
    return (AutoModelForCausalLM.from_pretrained(str(gemma_dir), dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(str(gemma_dir)))


class _Exports(dict):
    """Each type exported on first use (about a minute each on 2 cores)."""

    def __init__(self, model_dir, out):
        super().__init__()
        self.model_dir, self.out = model_dir, out

    def __missing__(self, out_type):
        self[out_type] = export_gguf(self.model_dir, self.out / f"gemma-{out_type}.gguf", out_type)
        return self[out_type]


@pytest.fixture(scope="module")
def ggufs(gemma_dir, tmp_path_factory):
    return _Exports(gemma_dir, tmp_path_factory.mktemp("gemma-gguf"))


def test_gemma_gguf_metadata_matches_the_original(gemma_gguf, ggufs):
    """The keys llama.cpp reads for gemma3 and its tokenizer: the same values as Google's own conversion."""
    ours, orig = gguf.GGUFReader(ggufs["f16"]).fields, gguf.GGUFReader(gemma_gguf).fields
    keys = [k for k in orig if k.startswith(("gemma3.", "tokenizer.ggml.")) and k not in SKIP]
    differ = [k for k in keys if k not in ours or ours[k].contents() != orig[k].contents()]
    # the 30 space-run tokens: Google's file spells them with ' ', the imported tokenizer.json with '▁'
    tokens_o, tokens_g = ours["tokenizer.ggml.tokens"].contents(), orig["tokenizer.ggml.tokens"].contents()
    assert sum(a != b for a, b in zip(tokens_o, tokens_g, strict=True)) <= 30
    assert set(differ) <= {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type"}, differ


def test_llamacpp_tokenizes_gemma_like_hf(hf, ggufs):
    _, tok = hf
    with llama_server(ggufs["f16"], n_ctx=512) as server:
        got = {text: server.tokenize(text) for text in KOREAN_SET}
    want = {text: tok(text, add_special_tokens=False)["input_ids"] for text in KOREAN_SET}
    bad = [t for t in KOREAN_SET if got[t] != want[t]]
    print(f"Gemma GGUF export, llama.cpp tokenizer agreement: {len(KOREAN_SET) - len(bad)}/{len(KOREAN_SET)}")
    assert not bad, {t: (want[t], got[t]) for t in bad}


@pytest.mark.parametrize("out_type", ["f32", "f16"])
def test_llamacpp_gemma_greedy_matches_transformers(hf, ggufs, out_type):
    model, tok = hf
    prompts = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]] for t in PROMPTS]
    with llama_server(ggufs[out_type], n_ctx=256) as server:
        got = [server.greedy(p, 24) for p in prompts]
    want = [hf_greedy(model, p, 24) for p in prompts]
    same = sum(g == w for g, w in zip(got, want, strict=True))
    prefix = [next((i for i, (a, b) in enumerate(zip(g, w, strict=True)) if a != b), 24) for g, w in zip(got, want,
                                                                                                        strict=True)]
    print(f"Gemma {out_type}: greedy 24-token agreement {same}/{len(prompts)}, identical prefixes {prefix}")
    assert got == want


@pytest.mark.parametrize("changes,words", [
    ({"layer_types": ["full_attention"] * 18}, ["five-to-one"]),
    ({"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 5e4}}}, ["base 10000"]),
    ({"query_pre_attn_scalar": 160}, ["query_pre_attn_scalar 160"]),
    ({"attn_logit_softcapping": 50.0}, ["soft-capping"]),
])
def test_gemma_configs_llamacpp_would_run_wrong_are_refused(gemma_dir, tmp_path, changes, words):
    """llama.cpp hard-codes these for gemma3; a different value must fail the export, not run silently wrong."""
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(gemma_dir / "tokenizer.json", folder / "tokenizer.json")
    cfg = json.loads((gemma_dir / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KollmError) as e:
        export_gguf(folder, tmp_path / "m.gguf")
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert not (tmp_path / "m.gguf").exists()
