"""What every engine shares: the model's tokenizer and vocabulary as the API needs them (serve/client.py), prompt
scoring and echo, and the LoRA adapters it serves by name. An engine adds how it runs generations (`agenerate`),
how it installs an adapter and what it reports (`stats`)."""

from __future__ import annotations

import sys
import threading

import torch

from kollm.errors import KollmError
from kollm.serve.lora import Adapter, read_adapter
from kollm.serve.output import Output, Token, token_string
from kollm.serve.sampling import SamplingParams
from kollm.serve.sequence import Sampler
from kollm.serve.structured import Grammars
from kollm.serve.utf8 import Utf8Guard
from kollm.special_tokens import IM_END, encode_with_bos


class EngineBase:
    def __init__(self, model: torch.nn.Module, tokenizer: object, name: str, chat_template: str | None = None,
                 mask_pii: bool = False, utf8_guard: bool = True) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.mask_pii = mask_pii  # outputs are PII-masked before they leave (`--mask-pii`, serve/output.py)
        self.device = next(model.parameters()).device  # load_hf_causal_lm placed it by kollm.runtime
        mc = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_len = int(getattr(mc, "max_position_embeddings", 2048) or 2048)
        self.vocab = int(mc.vocab_size) if hasattr(mc, "vocab_size") else len(tokenizer)
        gen = getattr(model, "generation_config", None)  # the model folder's sampling defaults
        self.default_temperature = float(getattr(gen, "temperature", None) or 1.0)
        self.default_top_p = float(getattr(gen, "top_p", None) or 1.0)
        if chat_template:
            tokenizer.chat_template = chat_template
        eos = getattr(gen, "eos_token_id", None) or tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.utf8 = Utf8Guard(tokenizer, self.vocab, utf8_guard)  # valid UTF-8 by construction (serve/utf8.py)
        self.grammars = Grammars(tokenizer, self.vocab)  # response_format (serve/structured.py)
        # special tokens are zero-width in an echoed prompt
        self.sampler = Sampler(self.utf8, self.grammars, eos_ids, frozenset(tokenizer.all_special_ids), self.device)
        self.lock = threading.Lock()  # the model runs one forward at a time: steps, and prompt scoring
        self.loras: dict[str, Adapter] = {}  # LoRA adapters by the name clients send as `model`

    # ---- text and tokens ---------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """A string prompt as ids: BOS first when the tokenizer defines one, unless `add_special_tokens` is False."""
        if add_special_tokens:
            return encode_with_bos(self.tokenizer, text)  # kollm's one BOS rule
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special, clean_up_tokenization_spaces=False)

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        if not self.tokenizer.chat_template:
            raise ValueError("this model has no chat template; start the server with --chat-template FILE "
                             "(a Jinja template) or use /v1/completions")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template writes BOS itself

    def turn_end_ids(self) -> list[int]:
        tok = self.tokenizer.convert_tokens_to_ids(IM_END)  # kollm's ChatML turn ends with <|im_end|>, not EOS
        return [tok] if isinstance(tok, int) and tok != self.tokenizer.unk_token_id else []

    def tokenizer_info(self) -> dict:
        tok = self.tokenizer
        return {"tokenizer_class": type(tok).__name__, "bos_token": tok.bos_token, "eos_token": tok.eos_token,
                "pad_token": tok.pad_token, "add_bos_token": tok.bos_token is not None,
                "chat_template": tok.chat_template, "model_max_length": self.max_len}

    def token_piece(self, token: int) -> tuple[str, bytes]:
        data = self.utf8.pieces[token] if 0 <= token < len(self.utf8.pieces) else b""
        return token_string(data), data

    def min_tokens(self, text_bytes: int) -> int:
        return text_bytes // self.utf8.longest  # no token is longer than the vocabulary's longest piece

    def grammar(self, kind: str, schema: dict | None) -> str:
        grammar = Grammars.grammar(kind, schema)
        self.grammars.prepare()  # once per engine (seconds for a 262k vocabulary): a worker thread's job
        return grammar

    def output(self, p: SamplingParams) -> Output:
        """A request's output processor: text from token bytes, stop strings, PII masks (serve/output.py)."""
        return self.sampler.output(p, self.mask_pii)

    # ---- LoRA adapters -----------------------------------------------------------------------------------
    def list_loras(self) -> dict[str, str]:
        return {name: a.path for name, a in self.loras.items()}

    def add_lora(self, name: str, path: str) -> None:
        """Read, check and install the adapter at `path` as `name`; KollmError says what is wrong and the fix."""
        if name in self.loras:
            raise KollmError(f"a LoRA adapter named {name!r} is already loaded; unload it first or pick another name")
        self._can_serve_lora()
        adapter = read_adapter(path, self.model, name)
        self._install(adapter)
        if adapter.warning:
            print(f"kollm: warning: {adapter.warning}", file=sys.stderr, flush=True)

    def remove_lora(self, name: str) -> bool:
        """Unload adapter `name` (False: none by that name). Requests already running with it finish with it."""
        adapter = self.loras.get(name)
        if adapter is None:
            return False
        self._uninstall(adapter)
        return True

    def _adapter(self, name: str | None) -> Adapter | None:
        if name is None:
            return None
        adapter = self.loras.get(name)
        if adapter is None:
            raise ValueError(f"no LoRA adapter named {name!r} is loaded (loaded: {sorted(self.loras)})")
        return adapter

    def _can_serve_lora(self) -> None:
        """Raise KollmError when this engine cannot apply adapters to its model."""

    def _install(self, adapter: Adapter) -> None:
        raise NotImplementedError

    def _uninstall(self, adapter: Adapter) -> None:
        raise NotImplementedError

    # ---- scoring -----------------------------------------------------------------------------------------
    def _prompt_logits(self, ids: list[int], lora: Adapter | None) -> torch.Tensor:
        """Logits [len(ids), vocab] of every prompt position, under the engine lock."""
        assert lora is None, "this engine scores prompts of the base model only"
        return self.model(torch.tensor([ids], device=self.device)).logits[0]

    @torch.no_grad()
    def prompt_logprobs(self, ids: list[int], top: int, lora: str | None = None,
                        ) -> list[tuple[float, dict[int, float]] | None]:
        """For each prompt position: None for the first token, else (its logprob, the `top` best alternatives);
        under LoRA adapter `lora` when given."""
        adapter = self._adapter(lora)
        with self.lock:  # between two steps of the engine
            logits = self._prompt_logits(ids, adapter)[:-1].float()
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

    def echo(self, ids: list[int], p: SamplingParams, generated: list[Token], cut: bool) -> list[Token]:
        out = self.output(p)
        toks = out.begin(ids, echo=True)
        for t in generated:
            toks += out.push(t.id, t.logprob, t.top)
        return toks + out.finish(cut=cut)
