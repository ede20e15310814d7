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
# JSON laid out as json.dumps lays it out: a model is never offered whitespace between tokens, which a small model
# will otherwise emit until max_tokens (measured on Gemma-3-270M: 4/12 valid with llguidance's flexible whitespace,
# 8/12 with this and closed objects; the rest ran on inside a free-text string).
_COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")  # name -> schema
_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems", "items")  # schemas
_ONES = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "unevaluatedProperties")


def _closed(schema: object) -> object:
    """The schema with objects that list their properties closed to others (`additionalProperties: false` where
    unset), as OpenAI's strict mode and vLLM's xgrammar default have it: otherwise a small model keeps inventing
    keys (`"updated": false, "modified": false, ...`) until max_tokens."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for k in _MAPS:
        if isinstance(out.get(k), dict):
            out[k] = {name: _closed(v) for name, v in out[k].items()}
    for k in _LISTS:
        if isinstance(out.get(k), list):
            out[k] = [_closed(v) for v in out[k]]
    for k in _ONES:
        if isinstance(out.get(k), dict):
            out[k] = _closed(out[k])
    if isinstance(out.get("properties"), dict):
        out.setdefault("additionalProperties", False)
    return out


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
            grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(_closed(schema)), overrides=_COMPACT)
        except ValueError as e:
            raise ValueError(f"response_format schema is not usable: {e}") from None
        bad, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
        if bad:
            raise ValueError(f"response_format schema is not usable: {messages[0]}")
        return grammar

    def matcher(self, grammar: str) -> Constraint:
        import llguidance

        m = llguidance.LLMatcher(self.prepare(), grammar, log_level=0)
        if m.is_error():  # llguidance reports a bad grammar as a matcher state, not an exception
            raise ValueError(f"the grammar is not usable: {m.get_error().splitlines()[0]}")
        return Constraint(m, self._vocab)


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
