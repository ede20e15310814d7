"""Stage 2: train Korean tokenizers, saved in the Hugging Face `tokenizers` format."""

from kollm.tokenizer.config import TokenizerConfig
from kollm.tokenizer.train import load_tokenizer, save_tokenizer, train_tokenizer

__all__ = ["TokenizerConfig", "load_tokenizer", "save_tokenizer", "train_tokenizer"]
