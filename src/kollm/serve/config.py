from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EngineConfig:
    """The continuous-batching engine's limits (serve/engine.py); `kollm serve` reads them from [serve]."""

    max_num_seqs: int = 64  # requests in the running batch at once; more wait
    prefill_chunk: int = 256  # prompt tokens per engine step: lower keeps streams smoother under long prompts
    prefix_cache_mb: int = 1024  # KV of recent prompts kept for reuse (few-shot prefixes); 0: off
    kv_cache_mb: int = 4096  # the running batch's KV; new requests wait while it would exceed this
    # ngram: draft from the request's own text when it pays (serve/spec.py); draft: from `draft_model`
    # (serve/draft.py); off
    speculative: str = "ngram"
    max_model_len: int = 0  # context length (prompt + output) in tokens; 0: the model's own
    # False: a token may break UTF-8 as in transformers' generate (kollm eval reproduces it); never for the API
    utf8_guard: bool = True
    draft_model: str = ""  # HF causal-LM folder sharing the model's tokenizer (speculative = "draft" only)
    # greedy steps from a float16 copy of a big CPU head, argmax exact (serve/head.py): ~3 s to pack at load and
    # half the head's bytes of memory; kollm eval turns it off (its wide batches gain little, its runs are short)
    argmax_head: bool = True


@dataclass
class ServeConfig:
    """`kollm serve` / `kollm serve generate`: the [serve] section of a recipe, CLI flags on top.

    Sampling defaults are not here: they come from the model folder's generation_config.json."""

    model: str = ""  # Hugging Face causal-LM folder
    served_model_name: list[str] = field(default_factory=list)  # names clients use (default: the folder's name)
    host: str = "127.0.0.1"
    port: int = 8000
    chat_template: str = ""  # Jinja file for /v1/chat/completions when the model's tokenizer has none
    api_key: str = ""  # one shared key; empty: only the keys in keys_db (none there: no key needed)
    keys_db: str = "~/.local/share/kollm/keys.db"  # keys made by `kollm serve keys create` (stored hashed)
    rate_limit: float = 0.0  # requests per second per key (bursts of twice that); 0: off
    max_waiting: int = 256  # requests queued for the engine; more get 503 with Retry-After
    max_num_seqs: int = EngineConfig.max_num_seqs  # these: EngineConfig's, settable in [serve]
    prefill_chunk: int = EngineConfig.prefill_chunk
    prefix_cache_mb: int = EngineConfig.prefix_cache_mb
    kv_cache_mb: int = EngineConfig.kv_cache_mb
    speculative: str = EngineConfig.speculative
    max_model_len: int = EngineConfig.max_model_len
    draft_model: str = EngineConfig.draft_model
    lora: list[str] = field(default_factory=list)  # LoRA adapters as NAME=DIR (peft folders): `model` picks one
    allow_runtime_lora: bool = False  # /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's runtime updating)
    mask_pii: bool = False  # pass every output (streams included) through the data stage's PII masker
    drain_timeout: float = 30.0  # seconds running requests get to finish after SIGTERM
    # POST /v1/audio/transcriptions (serve/audio.py): a CTranslate2 whisper folder (`kollm import whisper`); empty: off
    whisper: str = ""
    whisper_concurrency: int = 1  # transcriptions run at once (the cores split between them); more wait
    whisper_compute_type: str = "int8"  # int8 | float32 (bench/speech.py: int8 1.4x faster, WER 0.052 vs 0.047)
    max_audio_mb: float = 25.0  # upload limit (OpenAI's): larger files get 413

    def engine(self) -> EngineConfig:
        return EngineConfig(self.max_num_seqs, self.prefill_chunk, self.prefix_cache_mb, self.kv_cache_mb,
                            self.speculative, self.max_model_len, draft_model=self.draft_model)
