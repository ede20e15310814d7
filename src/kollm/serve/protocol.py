"""Request bodies of the API, in OpenAI's shapes (vLLM's where OpenAI is silent).

Every model forbids fields it does not know: a parameter kollm does not support is a 400 that names it, never
silently ignored. Everything a request can carry is bounded here, at the boundary: numbers to ranges the engine can
use (a seed past 64 bits, NaN, a stop token id the model does not have: 400, never an error deep in the step loop),
text to valid Unicode in NFC (a lone surrogate such as JSON's "\\ud800" is not text: no tokenizer can encode it).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # a signed 64-bit integer, as vLLM takes it
MAX_STOP, MAX_STOP_CHARS = 16, 256  # OpenAI allows 4; lm-eval's local-completions sends a task's whole `until`
MAX_STOP_TOKEN_IDS = 64
MAX_LOGIT_BIAS = 1024
# image_url content parts (serve/images.py reads them): data URLs only, each image at most this many bytes once
# decoded (OpenAI allows 20 MB; a page scanned at 300 dpi is 1-3 MB as PNG), this many per request
MAX_IMAGE_BYTES = 8 << 20
MAX_IMAGES = 8


NOT_TEXT = "holds a lone surrogate (\\ud800-\\udfff), which is not a character; send valid Unicode text"


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(NOT_TEXT) from None
    return unicodedata.normalize("NFC", value)  # Korean text is NFC at kollm's boundaries


Text = Annotated[str, AfterValidator(_text)]
StopText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS), AfterValidator(_text)]
StopList = Annotated[list[StopText], Field(max_length=MAX_STOP)]
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class Sampling(BaseModel):
    """Fields shared by completions and chat completions."""

    model_config = _STRICT
    model: Text | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1, le=2**31 - 1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, ge=0.01, le=10.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    stop: StopText | StopList | None = None
    stop_token_ids: list[int] | None = Field(None, max_length=MAX_STOP_TOKEN_IDS)
    ignore_eos: bool = False
    speculative: bool = True  # kollm's: false keeps this request out of speculative decoding (same output)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = None

    @model_validator(mode="after")
    def _options_need_a_stream(self) -> Sampling:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream = true")
        return self


TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1)]


class CompletionRequest(Sampling):
    prompt: Text | list[Text] | TokenIds | list[TokenIds]
    max_tokens: int = Field(16, ge=0, le=2**31 - 1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: object) -> object:
        if prompt == "" or prompt == [] or isinstance(prompt, list) and "" in prompt:
            raise ValueError("the prompt is empty; send text, a list of texts or token ids")
        return prompt


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: Text


class ImageURL(BaseModel):
    model_config = _STRICT
    url: str  # a data URL (data:image/png;base64,...); its size is bounded by the body limit and MAX_IMAGE_BYTES
    detail: Literal["auto", "low", "high"] | None = None  # accepted for OpenAI's clients; OCR reads every pixel


class ImagePart(BaseModel):
    model_config = _STRICT
    type: Literal["image_url"]
    image_url: ImageURL


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant"]  # developer: OpenAI's newer name for system
    content: Text | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] | None = None
    name: Text | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _known_parts_only(cls, content: object) -> object:
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", "image_url"):
                    raise ValueError(f"content part of type {kind!r} is not supported: this server reads text and "
                                     "images; send [{\"type\": \"text\", \"text\": ...}] or "
                                     "{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:...\"}} parts")
        return content

    @model_validator(mode="after")
    def _content_unless_assistant(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if self.role != "user" and isinstance(self.content, list) and any(
                isinstance(p, ImagePart) for p in self.content):
            raise ValueError(f"image_url parts are only allowed in user messages, not in a {self.role} message")
        return self

    def for_template(self) -> dict:
        """The message as chat templates take it: one string of content, `developer` as `system`. Image parts
        must have been read into text parts first (serve/images.py)."""
        content = self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content or [])
        msg = {"role": "system" if self.role == "developer" else self.role, "content": content}
        return {**msg, "name": self.name} if self.name else msg


class ResponseFormat(BaseModel):
    model_config = _STRICT
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict | None = None  # OpenAI's {"name": ..., "schema": {...}, "strict": ...}


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _few_images(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        n = sum(isinstance(p, ImagePart) for m in messages if isinstance(m.content, list) for p in m.content)
        if n > MAX_IMAGES:
            raise ValueError(f"{n} image_url parts; at most {MAX_IMAGES} images per request")
        return messages

    max_tokens: int | None = Field(None, ge=1, le=2**31 - 1)
    max_completion_tokens: int | None = Field(None, ge=1, le=2**31 - 1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs = true")
        return self


class TokenizeRequest(BaseModel):
    model_config = _STRICT
    model: Text | None = None
    prompt: Text
    add_special_tokens: bool = True


class LoadLoraRequest(BaseModel):
    """vLLM's /v1/load_lora_adapter body."""

    model_config = _STRICT
    lora_name: Annotated[Text, StringConstraints(min_length=1, max_length=256)]
    lora_path: Annotated[Text, StringConstraints(min_length=1, max_length=4096)]


class UnloadLoraRequest(BaseModel):
    """vLLM's /v1/unload_lora_adapter body."""

    model_config = _STRICT
    lora_name: Annotated[Text, StringConstraints(min_length=1, max_length=256)]


class DetokenizeRequest(BaseModel):
    model_config = _STRICT
    model: Text | None = None
    tokens: list[Annotated[int, Field(ge=0, le=2**31 - 1)]]
