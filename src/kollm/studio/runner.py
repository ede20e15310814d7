"""One run of an app version on some inputs: undo typos in the inputs (when the app asks), render the
prompt, call the model, mask PII, check the JSON schema, and measure (latency, tokens, characters). Shared by the
playground, the app endpoint and the test-set runner."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from kollm.hangul import pick_switches, switch_candidates
from kollm.spelling import keep_close, pick_spelling, spelling_candidates
from kollm.studio.apps import AppSpec, render_chat, render_completion
from kollm.studio.client import ModelClient, ModelError, Usage


@dataclass
class Outcome:
    output: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    input_chars: int = 0
    output_chars: int = 0
    latency_ms: float = 0.0
    json_valid: bool | None = None  # None: the app has no JSON schema
    json_error: str = ""
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def render(spec: AppSpec, inputs: dict) -> str | list[dict]:
    return render_completion(spec, inputs) if spec.mode == "completion" else render_chat(spec, inputs)


def prompt_chars(prompt: str | list[dict]) -> int:
    return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)


def finish(spec: AppSpec, text: str, out: Outcome, inputs: dict | None = None) -> Outcome:
    """Post-process a complete output: only the small edits of the input kept (AppSpec.keep_close; `inputs`: what
    the prompt was filled with, typos undone), PII masking, then the JSON-schema check (on what the caller
    receives)."""
    names = spec.text_variables()
    if spec.keep_close and inputs is not None and len(names) == 1:  # one text input: AppSpec.check says so
        text = keep_close(str(inputs.get(names[0], "")), text.strip())
    if spec.pii_mask:
        from kollm.data.pii import mask_for_people  # the data stage's rules: one definition of Korean PII in kollm

        text = mask_for_people(text)
    out.output, out.output_chars = text, len(text)
    schema = spec.schema()
    if schema is not None:
        from jsonschema import ValidationError, validate

        try:
            validate(json.loads(text), schema)
            out.json_valid = True
        except ValueError as e:
            out.json_valid, out.json_error = False, f"not JSON: {e}"
        except ValidationError as e:
            out.json_valid, out.json_error = False, f"does not match the schema: {e.message}"
    return out


async def fix_inputs(client: ModelClient, spec: AppSpec, inputs: dict, model: str = "") -> dict:
    """The inputs with their typos undone (AppSpec.fix_typos): keyboard-mode slips switched back (kollm.hangul),
    then a spelling slip undone (kollm.spelling), each round's candidates for every text input scored in one
    request to the model the version runs on. Returns `inputs` itself when nothing changed. Raises ModelError."""
    if not spec.fix_typos:
        return inputs
    texts = {k: v for k, v in inputs.items() if isinstance(v, str) and k not in spec.files}
    switch = {k: switch_candidates(v) for k, v in texts.items()}
    for k, (cands, scores) in (await _scored(client, spec, model, switch)).items():
        texts[k] = pick_switches(cands[0], scores)
    # Kiwi's analyses take a few ms a text (seconds for the first: loading Kiwi), off the event loop
    spelling = {k: await asyncio.to_thread(spelling_candidates, v) for k, v in texts.items()}
    picked = await _scored(client, spec, model, {k: cands for k, (cands, _) in spelling.items()})
    for k, (cands, scores) in picked.items():
        texts[k] = pick_spelling(cands, spelling[k][1], scores)
    return inputs if all(inputs[k] == v for k, v in texts.items()) else {**inputs, **texts}


async def _scored(client: ModelClient, spec: AppSpec, model: str,
                  candidates: dict[str, list[str]]) -> dict[str, tuple[list[str], list[float]]]:
    """Each input's candidates with their log-probabilities, all in one request; inputs with nothing to weigh are
    left out."""
    todo = {k: c for k, c in candidates.items() if len(c) > 1}
    if not todo:
        return {}
    scores = await client.text_logprobs([t for c in todo.values() for t in c], version_model(spec, model))
    out, at = {}, 0
    for k, c in todo.items():
        out[k], at = (c, scores[at:at + len(c)]), at + len(c)
    return out


def version_model(spec: AppSpec, model: str = "") -> str:
    """The model a call goes to: the version's own (a tuned adapter is part of the version), else the caller's."""
    return spec.model or model


async def run_once(client: ModelClient, spec: AppSpec, inputs: dict, model: str = "") -> Outcome:
    """The whole output at once. Input errors (a missing variable) raise KollmError; model errors are in `.error`."""
    prompt = render(spec, inputs)  # a missing input is an error before any call
    out = Outcome(input_chars=prompt_chars(prompt))
    t = time.perf_counter()
    try:
        fixed = await fix_inputs(client, spec, inputs, model)
        if fixed is not inputs:  # rendered again only when a typo was undone
            prompt = render(spec, fixed)
        text, usage = await client.complete(spec, prompt, version_model(spec, model))
    except ModelError as e:
        out.error, out.latency_ms = e.message, (time.perf_counter() - t) * 1000
        return out
    out.latency_ms = (time.perf_counter() - t) * 1000
    out.prompt_tokens, out.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    return finish(spec, text, out, fixed)


async def run_stream(client: ModelClient, spec: AppSpec, inputs: dict, model: str = "",
                     count_prompt: bool = False) -> AsyncIterator[dict]:
    """Events for a client: {"type": "prompt"} (the rendered prompt and its token count), {"type": "delta",
    "text"} as text arrives, then {"type": "done", ...Outcome} or {"type": "error", "message", ...Outcome}.
    The prompt is rendered before the first event, so a missing input raises KollmError before streaming starts."""
    prompt = render(spec, inputs)
    out = Outcome(input_chars=prompt_chars(prompt))
    try:
        fixed = await fix_inputs(client, spec, inputs, model)
    except ModelError as e:
        yield {"type": "error", "message": e.message, **out.to_dict()}
        return
    if fixed is not inputs:  # rendered again only when a typo was undone
        prompt = render(spec, fixed)
    if count_prompt:
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        yield {"type": "prompt", "prompt": prompt, "prompt_tokens": await client.count_tokens(text)}
    t = time.perf_counter()
    parts: list[str] = []
    try:
        async for step in client.stream(spec, prompt, version_model(spec, model)):
            if isinstance(step, Usage):
                out.prompt_tokens, out.completion_tokens = step.prompt_tokens, step.completion_tokens
            else:
                parts.append(step)
                # PII masking needs the whole text (a phone number can arrive split over chunks), and so does
                # keeping a correction's small edits: such an app's stream holds its text back and sends it,
                # finished, in the final event.
                if not (spec.pii_mask or spec.keep_close):
                    yield {"type": "delta", "text": step}
    except ModelError as e:
        out.error, out.latency_ms = e.message, (time.perf_counter() - t) * 1000
        out.output = "".join(parts)
        yield {"type": "error", "message": e.message, **out.to_dict()}
        return
    out.latency_ms = (time.perf_counter() - t) * 1000
    finish(spec, "".join(parts), out, fixed)
    yield {"type": "done", **out.to_dict()}
