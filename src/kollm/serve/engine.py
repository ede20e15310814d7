"""The serving engine over any Hugging Face causal-LM folder (kollm-trained or not).

The HTTP app talks to an engine through four calls: `encode` (text -> prompt ids, BOS as the tokenizer's config
says), `prompt_logprobs` (scores of a prompt's own tokens: `echo` + `logprobs`, the contract lm-eval's
`local-completions` uses for log-likelihood), `generate` (a stream of `Token`s for one request) and
`chat_prompt` (the tokenizer's chat template). A new engine (continuous batching, another runtime) implements
the same four.

This one runs one request at a time with a KV cache of its own (torch already uses every core for one stream);
batching many requests per decode step is the next step for throughput, behind the same calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from kollm.errors import KollmError
from kollm.model.hf import load_hf_causal_lm
from kollm.serve.detok import TextStream
from kollm.serve.sampling import SamplingParams, next_token
from kollm.serve.utf8 import Utf8Guard


@dataclass
class Token:
    id: int
    text: str  # the new text this token makes safe to emit (may be "" while a character is incomplete)
    logprob: float | None
    top: dict[int, float] | None  # the `logprobs` most likely alternatives, by id


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Finish:
    reason: str  # "stop" (EOS, a stop token or string) or "length"
    text: str  # text released at the end (held-back characters)


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer: object, name: str, chat_template: str | None = None) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.device = next(model.parameters()).device  # load_hf_causal_lm placed it by kollm.runtime
        self.max_len = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.vocab = int(model.config.vocab_size) if hasattr(model.config, "vocab_size") else len(tokenizer)
        gen = getattr(model, "generation_config", None)  # the model folder's sampling defaults
        self.default_temperature = float(getattr(gen, "temperature", None) or 1.0)
        self.default_top_p = float(getattr(gen, "top_p", None) or 1.0)
        if chat_template:
            tokenizer.chat_template = chat_template
        eos = getattr(gen, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.utf8 = Utf8Guard(tokenizer, self.vocab)  # valid UTF-8 by construction (serve/utf8.py)
        self.lock = threading.Lock()  # one stream at a time

    @classmethod
    def load(cls, path: str | Path, chat_template: str | Path | None = None) -> Engine:
        path = Path(path)
        model, tokenizer = load_hf_causal_lm(path)
        template = None
        if chat_template:
            p = Path(chat_template)
            if not p.is_file():
                raise KollmError(f"chat template {p} does not exist; pass a Jinja file to --chat-template")
            template = p.read_text(encoding="utf-8")
        return cls(model, tokenizer, path.name, template)

    # ---- prompts ---------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """A string prompt as ids: BOS first when the tokenizer defines one (kollm models saw BOS at every
        document start; so did Gemma and Llama)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        return [bos, *ids] if bos is not None else ids

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        if not self.tokenizer.chat_template:
            raise ValueError("this model has no chat template; start the server with --chat-template FILE "
                             "(a Jinja template) or use /v1/completions")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template writes BOS itself

    def token_text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # ---- scoring -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def prompt_logprobs(self, ids: list[int], top: int) -> list[tuple[float, dict[int, float]] | None]:
        """For each prompt position: None for the first token, else (its logprob, the `top` best alternatives)."""
        with self.lock:
            logits = self.model(torch.tensor([ids], device=self.device)).logits[0, :-1].float()
        out: list[tuple[float, dict[int, float]] | None] = [None]
        for start in range(0, logits.shape[0], 256):  # log-softmax in chunks: a 262k vocabulary is 1 MB a row
            lp = torch.log_softmax(logits[start:start + 256], dim=-1)
            target = torch.tensor(ids[start + 1:start + 1 + lp.shape[0]], device=lp.device)
            chosen = lp.gather(1, target[:, None])[:, 0]
            best = torch.topk(lp, max(top, 1), dim=-1) if top else None
            for i in range(lp.shape[0]):
                alts = dict(zip(best.indices[i].tolist(), best.values[i].tolist(), strict=True)) if best else {}
                out.append((float(chosen[i]), alts))
        return out

    # ---- generation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, ids: list[int], p: SamplingParams) -> Iterator[Token | Finish]:
        """Tokens of one completion, then a Finish. Closing the iterator early (a client that went away) ends the
        request and frees the engine at once."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(p.seed if p.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        stream = TextStream(self.tokenizer, p.stop)
        stops = set(p.stop_token_ids) | (set() if p.ignore_eos else self.eos_ids)
        seen = torch.tensor(ids, device=self.device)
        owed = 0  # UTF-8 continuation bytes the output still owes
        with self.lock:
            out = self.model(torch.tensor([ids], device=self.device), use_cache=True)
            for i in range(p.max_tokens):
                logits = out.logits[0, -1].float()
                tok = next_token(self.utf8.mask(logits, owed), seen, p, gen)
                owed = self.utf8.step(owed, tok)
                lp = top = None
                if p.logprobs is not None:
                    logp = torch.log_softmax(logits, dim=-1)  # the model's distribution, as OpenAI reports it
                    lp = float(logp[tok])
                    if p.logprobs:
                        best = torch.topk(logp, p.logprobs)
                        top = dict(zip(best.indices.tolist(), best.values.tolist(), strict=True))
                if tok in stops:
                    yield Finish("stop", stream.finish())
                    return
                text = stream.push(tok)
                yield Token(tok, text, lp, top)
                if stream.stopped:
                    yield Finish("stop", "")
                    return
                if i + 1 < p.max_tokens:  # no forward pass for a token that will not be sampled
                    seen = torch.cat([seen, torch.tensor([tok], device=self.device)])
                    out = self.model(torch.tensor([[tok]], device=self.device), cache=out.cache, use_cache=True)
        yield Finish("length", stream.finish())

    def complete(self, prompt: str, max_tokens: int = 16, temperature: float | None = None,
                 top_p: float | None = None, seed: int | None = None) -> Completion:
        """One string completion with the model's own sampling defaults where not given (CLI, quickstart)."""
        p = SamplingParams(max_tokens=max_tokens, seed=seed,
                           temperature=self.default_temperature if temperature is None else temperature,
                           top_p=self.default_top_p if top_p is None else top_p)
        ids = self.encode(prompt)
        p.max_tokens = max(0, min(max_tokens, self.max_len - len(ids)))
        text, n, reason = "", 0, "length"
        for step in self.generate(ids, p):
            if isinstance(step, Finish):
                text, reason = text + step.text, step.reason
            else:
                text, n = text + step.text, n + 1
        return Completion(text, reason, len(ids), n)
