"""Structured output (`response_format`: `json_object`, `json_schema`) by constrained decoding with llguidance.

At each step the grammar matcher says which tokens keep the output a valid prefix of the schema's JSON; the
others are masked before sampling, and EOS is allowed only once the JSON is complete. Chosen by measurement
(bench/serve_json.py, on CPU, Gemma's 262k vocabulary): llguidance compiles a schema in ~10 ms (xgrammar ~70 ms,
outlines-core ~1.4 s) and both it and xgrammar mask a token in well under a millisecond (outlines-core: ~80 ms);
llguidance is one small wheel, xgrammar pulls triton.
"""

from __future__ import annotations

import json
import threading

import torch

_BITS = torch.arange(32, dtype=torch.int32)


class Grammars:
    """The model's tokenizer prepared for llguidance once, at the first structured request (about 5 s for
    Gemma's 262k vocabulary, well under one for kollm's), and request grammars checked and compiled."""

    def __init__(self, tokenizer: object, vocab: int) -> None:
        self._tokenizer, self._vocab, self._lltok = tokenizer, vocab, None
        self._ready = threading.Lock()

    def prepare(self) -> object:
        with self._ready:
            if self._lltok is None:
                import llguidance.hf

                self._lltok = llguidance.hf.from_tokenizer(self._tokenizer, n_vocab=self._vocab)
            return self._lltok

    @staticmethod
    def grammar(kind: str, schema: dict | None) -> str:
        """An llguidance grammar for a response_format; ValueError (-> 400) names what is wrong."""
        import llguidance

        if kind == "json_object":
            schema = {"type": "object"}
        if not isinstance(schema, dict):
            raise ValueError("response_format json_schema needs {\"json_schema\": {\"name\": ..., \"schema\": "
                             "{...}}}: a JSON schema object")
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema))
        except ValueError as e:
            raise ValueError(f"response_format schema is not usable: {e}") from None
        bad, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
        if bad:
            raise ValueError(f"response_format schema is not usable: {messages[0]}")
        return grammar

    def matcher(self, grammar: str) -> Constraint:
        import llguidance

        return Constraint(llguidance.LLMatcher(self.prepare(), grammar, log_level=0), self._vocab)


class Constraint:
    """One request's grammar state: `mask` the logits before sampling, `advance` with the sampled token."""

    def __init__(self, matcher: object, vocab: int) -> None:
        self.m, self.vocab = matcher, vocab

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        words = torch.frombuffer(bytearray(self.m.compute_bitmask()), dtype=torch.int32)
        allowed = ((words[:, None] >> _BITS) & 1).view(-1)[:logits.shape[-1]].bool().to(logits.device)
        return logits.masked_fill(~allowed, float("-inf"))

    def advance(self, token: int) -> bool:
        """False when the grammar is complete (or broken): the request ends here."""
        self.m.consume_token(token)
        return not (self.m.is_stopped() or self.m.is_error())
