"""`kollm import hf`: a hub id (when online) or a local HF folder -> a plain HF folder kollm stages read."""

from __future__ import annotations

from pathlib import Path

from kollm.errors import KollmError
from kollm.interop.save import reason, save_hf_folder, torch_dtype


def import_hf(source: str | Path, out_dir: str | Path, dtype: str = "float32", revision: str | None = None) -> Path:
    """Load `source` (ORG/NAME or a folder) with transformers and re-save it: safetensors, tokenizer, generation config.

    Re-saving (rather than copying) normalises pickled .bin weights to safetensors and checks the model loads
    as a causal LM before anything is written.
    """
    dt = torch_dtype(dtype)
    from transformers import AutoTokenizer

    from kollm.model.hf import causal_lm_from_pretrained

    src = str(source)
    local = Path(src).is_dir()
    if local and not (Path(src) / "config.json").is_file():
        raise KollmError(f"{src} has no config.json; pass a Hugging Face model folder or an ORG/NAME hub id")
    if local and not any((Path(src) / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise KollmError(f"{src} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json); "
                         "copy the tokenizer files into the folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, revision=revision)
        model = causal_lm_from_pretrained(src, dt, revision=revision)
    except (OSError, ValueError, KeyError) as e:
        where = "folder" if local else "hub id (needs network and, for gated models, `hf auth login`)"
        raise KollmError(f"cannot load {src} as a causal LM {where}: {reason(e)}") from None
    return save_hf_folder(model.eval(), tokenizer, out_dir)
