"""Interop: models others published in (GGUF files, hub ids), kollm models out to the engines users run.

Pipeline order: data, tokenizer, model, train, interop, eval, serve, studio. This stage may import the earlier
stages and the shared helpers (runtime, special_tokens, files, errors), never eval or serve.
"""

from kollm.interop.gguf_export import export_gguf
from kollm.interop.gguf_import import import_gguf
from kollm.interop.hf_import import import_hf
from kollm.interop.whisper import import_whisper

__all__ = ["export_gguf", "import_gguf", "import_hf", "import_whisper"]
