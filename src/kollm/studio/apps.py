"""What an app is and how one version becomes a prompt: `{{variables}}` in a template, an instruction, a table of
few-shot examples, sampling parameters, completion or chat mode, optional JSON-schema output and PII masking.

Pure functions only (no database, no HTTP), so the playground, the app endpoint and the test runner render a
version exactly the same way."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from kollm.errors import KollmError
from kollm.prompts import fill, output_prefix, variables

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # also the URL path segment: no dots, no slashes, no traversal
LABELS = ("production", "staging")
MODES = ("completion", "chat")
MAX_TEXT = 20_000  # characters of any one field: a prompt app is not a document store
FILE_KINDS = ("image", "audio")  # a file variable's kind: image -> OCR, audio -> transcription (studio/extract.py)


@dataclass
class Params:
    # None: not sent, so the server applies the model's own default (its generation_config.json, the one home of
    # sampling defaults); a number is the app's deliberate choice (0 = greedy). Versions saved before this held
    # numbers and keep them.
    temperature: float | None = None
    top_p: float | None = None
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0
    max_tokens: int = 128
    stop: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise KollmError("temperature must be between 0 and 2 (or empty: the model's default)")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise KollmError("top-p must be greater than 0 and at most 1")
        if self.top_k < 0:
            raise KollmError("top-k must be 0 (off) or a positive number")
        if not 0.0 < self.repetition_penalty <= 10.0:
            raise KollmError("repetition penalty must be greater than 0 and at most 10")
        if not 1 <= self.max_tokens <= 8192:
            raise KollmError("max tokens must be between 1 and 8192")
        if len(self.stop) > 4:
            raise KollmError("at most 4 stop sequences")


@dataclass
class AppSpec:
    """One version of an app. Stored as a dict in `versions.spec`; immutable once saved."""

    template: str = "{{input}}"
    instruction: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)  # {"inputs": {var: text}, "output": text}
    params: Params = field(default_factory=Params)
    mode: str = "completion"
    json_schema: str = ""  # JSON Schema text; empty: free text output
    pii_mask: bool = False
    # the model this version runs on (sent as the request's `model`), e.g. a tuned LoRA adapter's name on the model
    # server; empty: the Studio's --model (or the server's own)
    model: str = ""
    # variables filled from a file before the template is (`{"receipt": "image"}`): the playground offers a file
    # picker for them and the app endpoint accepts a data URL; a variable not named here is text
    files: dict[str, str] = field(default_factory=dict)
    # undo the text inputs' typos before the template is filled: keyboard-mode slips (dkdlvhs -> 아이폰,
    # kollm.hangul), then a spelling slip (되지고기 -> 돼지고기, kollm.spelling), each change judged by the model
    # (studio/runner.py): for search queries
    fix_typos: bool = False
    # keep only the small edits the output makes to the input (kollm.spelling.keep_close: a place changed by more
    # than two jamo goes back as typed): for correctors, whose small models rewrite words they do not know; needs a
    # template with one text variable, the text the output corrects
    keep_close: bool = False

    def variables(self) -> list[str]:
        """The template's variables in order of first appearance."""
        return variables(self.template)

    def text_variables(self) -> list[str]:
        """The variables filled with text (not from a file)."""
        return [v for v in self.variables() if v not in self.files]

    def schema(self) -> dict | None:
        return json.loads(self.json_schema) if self.json_schema.strip() else None

    def check(self) -> AppSpec:
        if self.mode not in MODES:
            raise KollmError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.template.strip():
            raise KollmError("the template is empty; write the input the model sees, with {{variables}}")
        for name, text in (("template", self.template), ("instruction", self.instruction)):
            if len(text) > MAX_TEXT:
                raise KollmError(f"the {name} is longer than {MAX_TEXT} characters")
        if not self.variables():
            raise KollmError("the template has no {{variable}}; add one, e.g. {{query}}, for the input")
        if self.json_schema.strip():
            try:
                schema = json.loads(self.json_schema)
            except ValueError as e:
                raise KollmError(f"the JSON schema is not valid JSON: {e}") from None
            from jsonschema import SchemaError, validators

            try:
                validators.validator_for(schema).check_schema(schema)
            except SchemaError as e:
                raise KollmError(f"the JSON schema is not a valid schema: {e.message}") from None
        if len(self.model) > 200:
            raise KollmError("the model name is longer than 200 characters")
        if not isinstance(self.files, dict):
            raise KollmError('files must map variables to their kind, e.g. {"receipt": "image"}')
        for var, kind in self.files.items():
            if var not in self.variables():
                raise KollmError(f"file variable {var!r} is not in the template; use one of its variables "
                                 f"({', '.join(self.variables())}) or remove it from files")
            if kind not in FILE_KINDS:
                raise KollmError(f"file variable {var!r} has kind {kind!r}; a file variable is "
                                 f"{' or '.join(FILE_KINDS)} (a text variable is left out of files)")
        if self.keep_close and len(self.text_variables()) != 1:
            raise KollmError("keep_close compares the output with the one text input it corrects; the template has "
                             f"{len(self.text_variables())} text variables: turn keep_close off or keep one")
        self.params.check()
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AppSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "params"}
        if "keyboard_switch" in d and "fix_typos" not in d:  # versions saved before the field's rename
            known["fix_typos"] = d["keyboard_switch"]
        p = d.get("params") or {}
        params = Params(**{k: v for k, v in p.items() if k in Params.__dataclass_fields__})
        return cls(params=params, **known)


def _join(prompt: str, output: str) -> str:
    return prompt + output_prefix(prompt) + output


def render_completion(spec: AppSpec, inputs: dict[str, Any]) -> str:
    """The completion prompt: instruction, then each example (template filled + output), then the input."""
    parts = [spec.instruction.strip()] if spec.instruction.strip() else []
    parts += [_join(fill(spec.template, ex.get("inputs", {}), strict=False), str(ex.get("output", "")))
              for ex in spec.examples]
    parts.append(fill(spec.template, inputs))
    return "\n\n".join(parts)


def render_chat(spec: AppSpec, inputs: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages: the instruction as the system message, each example as a user/assistant pair."""
    msgs = [{"role": "system", "content": spec.instruction.strip()}] if spec.instruction.strip() else []
    for ex in spec.examples:
        msgs += [{"role": "user", "content": fill(spec.template, ex.get("inputs", {}), strict=False)},
                 {"role": "assistant", "content": str(ex.get("output", ""))}]
    msgs.append({"role": "user", "content": fill(spec.template, inputs)})
    return msgs


def spec_text(spec: AppSpec) -> list[str]:
    """A version as readable lines (what the diff compares): one block per part, examples as a table."""
    p = spec.params
    lines = [f"mode: {spec.mode}", *([f"model: {spec.model}"] if spec.model else []),
             *([f"files: {', '.join(f'{k}={v}' for k, v in spec.files.items())}"] if spec.files else []),
             "", "[instruction]",
             *spec.instruction.splitlines(), "", "[template]", *spec.template.splitlines(), "", "[examples]"]
    for i, ex in enumerate(spec.examples, 1):
        ins = ", ".join(f"{k}={v!r}" for k, v in ex.get("inputs", {}).items())
        lines.append(f"{i}. {ins} -> {ex.get('output', '')!r}")
    lines += ["", "[parameters]", f"temperature: {_or_default(p.temperature)}", f"top_p: {_or_default(p.top_p)}",
              f"top_k: {p.top_k}",
              f"repetition_penalty: {p.repetition_penalty}", f"max_tokens: {p.max_tokens}",
              f"stop: {json.dumps(p.stop, ensure_ascii=False)}", f"pii_mask: {spec.pii_mask}",
              f"fix_typos: {spec.fix_typos}", f"keep_close: {spec.keep_close}", "",
              "[json_schema]", *spec.json_schema.splitlines()]
    return lines


def _or_default(value: float | None) -> str:
    return "model default" if value is None else str(value)


SECTIONS = ("[instruction]", "[template]", "[examples]", "[parameters]", "[json_schema]")


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """spec_text's lines by section (the lines before the first heading are "[mode]"), blank edges dropped."""
    out: dict[str, list[str]] = {"[mode]": []}
    cur = "[mode]"
    for line in lines:
        if line in SECTIONS:
            cur = line
            out[cur] = []
        else:
            out[cur].append(line)
    for body in out.values():
        while body and not body[-1].strip():
            body.pop()
    return out


def diff(old: AppSpec | None, new: AppSpec, old_name: str = "previous", new_name: str = "this") -> list[str]:
    """A unified diff of two versions' readable text, section by section: every hunk header names its section
    (`@@ -1,2 +1,3 @@ [template]`, line numbers within it), and no hunk runs across a section's edge, where the
    context lines of one section used to show a change under the previous one's heading. All `+` for a first
    version."""
    a = _sections(spec_text(old)) if old is not None else {}
    b = _sections(spec_text(new))
    out: list[str] = []
    for name in dict.fromkeys([*a, *b]):
        for line in list(difflib.unified_diff(a.get(name, []), b.get(name, []), lineterm="", n=2))[2:]:
            out.append(f"{line} {name}" if line.startswith("@@") else line)
    return [f"--- {old_name}", f"+++ {new_name}", *out] if out else []


def file_kinds(fields: Iterable[tuple[str, object]], template: str) -> dict[str, str]:
    """The editor's per-variable kind choices (`file-<variable>` = text|image|audio) as `AppSpec.files`: only the
    file kinds, and only for variables the template still has (the choices on the page are the saved version's,
    and a variable renamed in the draft drops its old choice instead of failing the save)."""
    names = variables(template)
    return {k[5:]: str(v) for k, v in fields
            if k.startswith("file-") and k[5:] in names and str(v) in FILE_KINDS}


def check_slug(slug: str) -> str:
    if not SLUG.match(slug or ""):
        raise KollmError(f"app id {slug!r} must be 1-63 lowercase letters, digits or hyphens, starting with a "
                         "letter or digit (it becomes the URL /v1/apps/ID/run)")
    return slug
