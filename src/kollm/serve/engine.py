"""Text completion over any Hugging Face causal-LM folder (kollm-trained or not)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig

from kollm.model.hf import load_hf_causal_lm


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer: object, name: str) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.device = next(model.parameters()).device  # load_hf_causal_lm placed it by kollm.runtime
        gen = getattr(model, "generation_config", None)  # the model folder's sampling defaults
        self.default_temperature = float(getattr(gen, "temperature", None) or 1.0)
        self.default_top_p = float(getattr(gen, "top_p", None) or 1.0)
        self.max_len = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._lock = threading.Lock()  # one generate at a time: torch already uses every core

    @classmethod
    def load(cls, path: str | Path) -> Engine:
        path = Path(path)
        model, tokenizer = load_hf_causal_lm(path)
        return cls(model, tokenizer, path.name)

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):  # kollm models saw BOS at every document start
            ids = [bos, *ids]
        return ids

    @torch.no_grad()
    def complete(self, prompt: str, max_new_tokens: int = 16, temperature: float | None = None,
                 top_p: float | None = None, stop: list[str] | None = None, seed: int | None = None) -> Completion:
        """None for temperature/top_p: the model's own defaults (generation_config.json)."""
        temperature = self.default_temperature if temperature is None else temperature
        top_p = self.default_top_p if top_p is None else top_p
        ids = self.encode_prompt(prompt)
        ids = ids[-(self.max_len - 1):]  # keep the end of an over-long prompt
        max_new_tokens = max(0, min(max_new_tokens, self.max_len - len(ids)))
        if max_new_tokens == 0:
            return Completion("", "length", len(ids), 0)
        eos = self.tokenizer.eos_token_id
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None, top_p=top_p if temperature > 0 else None,
            top_k=None, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id or eos,
        )
        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
            x = torch.tensor([ids], device=self.device)
            out = self.model.generate(x, attention_mask=torch.ones_like(x), generation_config=gen)
        new = out[0, len(ids):].tolist()
        finish = "length"
        if eos is not None and eos in new:
            new, finish = new[:new.index(eos)], "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for s in stop or []:
            if s and s in text:
                text, finish = text[:text.index(s)], "stop"
        return Completion(text, finish, len(ids), len(new))
