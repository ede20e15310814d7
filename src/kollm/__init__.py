"""kollm: a Korean-first large-language-model stack (data, tokenizer, model, train, interop, eval, serve,
studio)."""

__version__ = "0.1.0"
