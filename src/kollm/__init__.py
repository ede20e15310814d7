"""kollm: a Korean-first large-language-model stack (data, tokenizer, model, train, eval, serve)."""

__version__ = "0.1.0"
