"""Bad input to import/export: one-line KollmError naming the file and the reason, and nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kollm.errors import KollmError
from kollm.interop import export_gguf, import_gguf, import_hf


def _tiny_gguf(path, arch="llama"):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.ones((64, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _one_line(e: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("<html>404 not found</html>")
    with pytest.raises(KollmError) as e:
        import_gguf(bad, tmp_path / "out")
    _one_line(e, str(bad), "not a GGUF file")
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path):
    with pytest.raises(KollmError) as e:
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    _one_line(e, "nope.gguf", "not found")


def test_truncated_gguf(tmp_path):
    whole = _tiny_gguf(tmp_path / "whole.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size - 1000])
    with pytest.raises(KollmError) as e:
        import_gguf(cut, tmp_path / "out")
    _one_line(e, str(cut), "truncated")
    assert not (tmp_path / "out").exists()


def test_header_only_fragment(tmp_path):
    whole = _tiny_gguf(tmp_path / "whole.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:40])  # magic, version, counts, then nothing
    with pytest.raises(KollmError) as e:
        import_gguf(cut, tmp_path / "out")
    _one_line(e, str(cut))


def test_architecture_transformers_cannot_read(tmp_path):
    f = _tiny_gguf(tmp_path / "rwkv.gguf", arch="rwkv6")
    with pytest.raises(KollmError) as e:
        import_gguf(f, tmp_path / "out")
    _one_line(e, str(f), "'rwkv6'", "cannot read")
    assert not (tmp_path / "out").exists()


def test_bad_dtype(tmp_path):
    with pytest.raises(KollmError) as e:
        import_gguf(_tiny_gguf(tmp_path / "m.gguf"), tmp_path / "out", dtype="int4")
    _one_line(e, "int4", "float32")


def _copy_model(src, dst, drop=()):
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink(missing_ok=True)
    return dst


def test_export_folder_without_tokenizer(tiny_model_dir, tmp_path):
    model = _copy_model(tiny_model_dir, tmp_path / "m", drop=("tokenizer.json", "tokenizer_config.json"))
    out = tmp_path / "m.gguf"
    with pytest.raises(KollmError) as e:
        export_gguf(model, out)
    _one_line(e, str(model), "tokenizer.json")
    assert not out.exists() and not list(tmp_path.glob(".m.gguf*"))


def test_import_hf_folder_without_tokenizer(tiny_model_dir, tmp_path):
    model = _copy_model(tiny_model_dir, tmp_path / "m", drop=("tokenizer.json", "tokenizer_config.json"))
    with pytest.raises(KollmError) as e:
        import_hf(model, tmp_path / "out")
    _one_line(e, str(model), "no tokenizer")
    assert not (tmp_path / "out").exists()


def test_export_not_a_model_folder(tmp_path):
    with pytest.raises(KollmError) as e:
        export_gguf(tmp_path, tmp_path / "x.gguf")
    _one_line(e, "config.json")


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes,words", [
    ({"model_type": "phi3"}, ["'phi3'", "qwen3"]),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, ["'yarn'"]),
    ({"hidden_act": "gelu"}, ["'gelu'"]),
    ({"attention_bias": True}, ["biases"]),
])
def test_export_layers_gguf_cannot_express(tiny_model_dir, tmp_path, changes, words):
    model = _copy_model(tiny_model_dir, tmp_path / "m")
    _edit_config(model, **changes)
    out = tmp_path / "m.gguf"
    with pytest.raises(KollmError) as e:
        export_gguf(model, out)
    _one_line(e, str(model), *words)
    assert not out.exists()


def test_export_unknown_tensor(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _copy_model(tiny_model_dir, tmp_path / "m")
    state = load_file(str(model / "model.safetensors"))
    state["model.layers.0.mlp.adapter.weight"] = state["model.norm.weight"].clone()
    save_file(state, str(model / "model.safetensors"))
    with pytest.raises(KollmError) as e:
        export_gguf(model, tmp_path / "m.gguf")
    _one_line(e, "model.layers.0.mlp.adapter.weight", "no qwen3 GGUF equivalent")
    assert not (tmp_path / "m.gguf").exists()


def test_export_pre_tokenizer_llamacpp_cannot_replay(tiny_model_dir, tmp_path):
    model = _copy_model(tiny_model_dir, tmp_path / "m")
    tok = json.loads((model / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    (model / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(KollmError) as e:
        export_gguf(model, tmp_path / "m.gguf")
    _one_line(e, "pre-tokenizer", "Whitespace")


def test_export_bad_type(tiny_model_dir, tmp_path):
    with pytest.raises(KollmError) as e:
        export_gguf(tiny_model_dir, tmp_path / "m.gguf", out_type="q4_k")
    _one_line(e, "q4_k", "q8_0")


def test_cli_reports_kollm_errors(tmp_path):
    """The typer apps raise KollmError unchanged, so `kollm`'s main() prints it on one line (exit 2)."""
    from typer.testing import CliRunner

    from kollm.interop.cli import export_app, import_app

    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"nope")
    res = CliRunner().invoke(import_app, ["gguf", str(bad), "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, KollmError) and "not a GGUF file" in str(res.exception)
    res = CliRunner().invoke(export_app, ["gguf", "--model", str(tmp_path), "--out", str(tmp_path / "o.gguf")])
    assert isinstance(res.exception, KollmError) and "config.json" in str(res.exception)
