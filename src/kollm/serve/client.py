"""The seam between the HTTP app and an engine, written down: what serve/app.py and serve/metrics.py may use of an
engine, and nothing else (vLLM's `EngineClient` is the model). Two engines implement it: `Engine` (continuous
batching, serve/engine.py) and `HFEngine` (transformers' forward, one request at a time, serve/hf_engine.py); the
API's tests run on both, and a test checks that the app touches no other member.

Blocking calls (`encode`, `decode`, `chat_prompt`, `grammar`, `prompt_logprobs`, `echo`, `add_lora`) are for a
worker thread, never the event loop: the app runs them in its tokenizer thread (or another worker).

LoRA adapters are named as vLLM names them: a request's `model` is an adapter's name or the base's; `lora` below is
that name (None: the base model).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kollm.serve.output import Token
from kollm.serve.sampling import SamplingParams
from kollm.serve.sequence import Finish


@dataclass
class EngineStats:
    """What /metrics reads of an engine (vLLM's names, kollm's prefix)."""

    kv_usage: float = 0.0  # share of the KV budget in use
    kv_bytes: int = 0
    prefix_bytes: int = 0  # stored prompt prefixes
    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_hits: int = 0  # prompt tokens found there
    spec_drafts: int = 0  # speculative decoding: rows that ran with drafted tokens
    spec_draft_tokens: int = 0  # tokens drafted
    spec_accepted_tokens: int = 0  # drafted tokens accepted


@runtime_checkable
class EngineClient(Protocol):
    name: str  # the model folder's name
    max_len: int  # context length, in tokens
    vocab: int  # token ids are 0..vocab-1
    default_temperature: float  # the model folder's generation_config.json: the one home of sampling defaults
    default_top_p: float

    # ---- text and tokens ---------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Text as prompt ids (BOS first as the tokenizer's config says, unless add_special_tokens is False)."""

    def decode(self, ids: list[int], skip_special: bool = False) -> str: ...

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """Messages through the model's chat template; ValueError (a 400) when there is none."""

    def turn_end_ids(self) -> list[int]:
        """Tokens that end an assistant turn besides EOS (kollm's ChatML `<|im_end|>`): chat stops at them."""

    def tokenizer_info(self) -> dict:
        """vLLM's /tokenizer_info: special tokens and the chat template."""

    def token_piece(self, token: int) -> tuple[str, bytes]:
        """A token as logprobs show it (OpenAI's `bytes:\\xNN` when not whole characters) and its bytes."""

    def min_tokens(self, text_bytes: int) -> int:
        """The fewest tokens text of this many UTF-8 bytes can be: refuse what cannot fit without tokenizing."""

    def grammar(self, kind: str, schema: dict | None) -> str:
        """A response_format as a grammar the engine enforces; ValueError (a 400) names what is wrong."""

    # ---- generation and scoring ------------------------------------------------------------------------
    def agenerate(self, ids: list[int], p: SamplingParams, lora: str | None = None,
                  ) -> AsyncIterator[Token | Finish]:
        """One generation's tokens (under adapter `lora`), then a Finish; an error is raised from the iterator;
        closing it early (a client gone) frees the request's slot at the next step. ValueError for an adapter
        that is not loaded."""

    def prompt_logprobs(self, ids: list[int], top: int, lora: str | None = None,
                        ) -> list[tuple[float, dict[int, float]] | None]:
        """Each prompt position's (logprob, `top` best alternatives) under adapter `lora`; None for the first
        token."""

    def echo(self, ids: list[int], p: SamplingParams, generated: list[Token], cut: bool) -> list[Token]:
        """The prompt's tokens then the generated ones as one text (echo): offsets and PII masks cover both."""

    def stats(self) -> EngineStats: ...

    # ---- LoRA adapters (vLLM's add_lora / remove_lora / list_loras) ------------------------------------------
    def add_lora(self, name: str, path: str) -> None:
        """Load the peft adapter folder `path` as `name`; KollmError (a 400) says what is wrong with it, or that
        the name is taken, or that this engine cannot serve adapters on its model."""

    def remove_lora(self, name: str) -> bool:
        """Unload adapter `name`; False when none has that name. Requests running with it finish with it."""

    def list_loras(self) -> dict[str, str]:
        """Loaded adapters: name -> the folder it was loaded from."""
