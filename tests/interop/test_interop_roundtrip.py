"""GGUF export -> `kollm import gguf` gives back the model (logits within the export type's tolerance)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import korean_texts
from transformers import AutoModelForCausalLM, AutoTokenizer

from kollm.interop import export_gguf, import_gguf, import_hf

TEXT = "서울은 대한민국의 수도이며 <|phone|> 공백  \n\n\t 끝 👨‍👩‍👧 \u1112\u1161\u11ab"
# f32 is exact; f16 rounds each weight to 11 significant bits (measured ~5e-4 on the tiny model)
TOL = {"f32": 1e-5, "f16": 2e-2}


def _logits(folder, ids):
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def roundtrips(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rt")
    return {t: import_gguf(export_gguf(tiny_model_dir, out / f"m-{t}.gguf", t), out / f"hf-{t}") for t in TOL}


@pytest.mark.parametrize("out_type", list(TOL))
def test_roundtrip_logits(tiny_model_dir, roundtrips, out_type):
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text_ids = tok(" ".join(korean_texts(2)), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tok.bos_token_id, *text_ids][:64]])
    diff = (_logits(tiny_model_dir, ids) - _logits(roundtrips[out_type], ids)).abs().max().item()
    print(f"{out_type}: round-trip max |logit diff| = {diff:.2e}")
    assert diff < TOL[out_type]


def test_roundtrip_tokenizer_and_special_tokens(tiny_model_dir, roundtrips):
    a, b = AutoTokenizer.from_pretrained(str(tiny_model_dir)), AutoTokenizer.from_pretrained(str(roundtrips["f16"]))
    for text in [TEXT, *korean_texts(5)]:
        assert a(text, add_special_tokens=False)["input_ids"] == b(text, add_special_tokens=False)["input_ids"]
    assert (a.bos_token, a.eos_token, a.pad_token) == (b.bos_token, b.eos_token, b.pad_token)


@pytest.mark.parametrize("pre", [None, "qwen2"])  # kollm's own tokenizer rebuild; transformers' GGUF converter
def test_gguf_without_bos_imports_without_bos(roundtrips, tmp_path, pre):
    """Qwen's GGUFs name <|endoftext|> as BOS but set add_bos_token false: llama.cpp puts none before a prompt, so
    the imported folder names none and kollm (special_tokens.encode_with_bos) adds none either."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    from kollm.special_tokens import encode_with_bos
    from kollm.tokenizer.train import load_tokenizer

    src = roundtrips["f32"].parent / "m-f32.gguf"
    reader = gguf.GGUFReader(src)
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is True
    new = {"tokenizer.ggml.add_bos_token": MetadataDetails(gguf.GGUFValueType.BOOL, False)}
    if pre:
        new["tokenizer.ggml.pre"] = MetadataDetails(gguf.GGUFValueType.STRING, pre)
    dst = tmp_path / "no-bos.gguf"
    writer = gguf.GGUFWriter(dst, arch=reader.fields["general.architecture"].contents(), endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, new, [])
    tok = load_tokenizer(import_gguf(dst, tmp_path / "hf"))
    assert tok.bos_token is None and encode_with_bos(tok, TEXT) == tok.encode(TEXT, add_special_tokens=False)


def test_imported_folder_needs_no_gguf(roundtrips):
    """A plain HF folder: no quantization_config, loads with `gguf` made unimportable."""
    folder = roundtrips["f32"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    code = ("import sys; sys.modules['gguf'] = None\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"AutoModelForCausalLM.from_pretrained({str(folder)!r}); AutoTokenizer.from_pretrained({str(folder)!r})\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert (folder / "generation_config.json").is_file()


def test_imported_folder_exports_again(roundtrips, tmp_path):
    """An imported model exports too, and the second round trip is still the same model."""
    again = import_gguf(export_gguf(roundtrips["f32"], tmp_path / "again.gguf", "f32"), tmp_path / "again")
    tok = AutoTokenizer.from_pretrained(str(again))
    ids = torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"]])
    assert (_logits(roundtrips["f32"], ids) - _logits(again, ids)).abs().max().item() < 1e-5


def test_q8_0_export_is_quantized(tiny_model_dir, tmp_path):
    import gguf

    out = export_gguf(tiny_model_dir, tmp_path / "m.gguf", "q8_0")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    reader = gguf.GGUFReader(out)
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert reader.fields["general.architecture"].contents() == "qwen3"


def test_import_hf_local_folder(tiny_model_dir, tmp_path):
    """`kollm import hf` (hub ids when online) re-saves a local folder unchanged; no network used."""
    out = import_hf(tiny_model_dir, tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = torch.tensor([tok(TEXT, add_special_tokens=False)["input_ids"]])
    assert torch.equal(_logits(tiny_model_dir, ids), _logits(out, ids))


def test_import_hf_bfloat16(tiny_model_dir, tmp_path):
    out = import_hf(tiny_model_dir, tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
