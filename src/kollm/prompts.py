"""Prompt templates with `{{variables}}`: how an input row becomes a prompt and where its output joins it.

One home because two stages render the same prompts: `tune` trains on them and the Studio (over HTTP) sends them,
and a tuned model only works if both agree to the character (a missing space before the output is a different
token sequence)."""

from __future__ import annotations

import re
from typing import Any

from kollm.errors import KollmError

# `{{ name }}`: letters (Hangul included), digits and underscores, like a Python identifier
VARIABLE = re.compile(r"\{\{\s*([^\W\d]\w{0,63})\s*\}\}")


def variables(template: str) -> list[str]:
    """The template's variable names, in order of first use."""
    return list(dict.fromkeys(VARIABLE.findall(template)))


def fill(template: str, inputs: dict[str, Any], strict: bool = True) -> str:
    """`template` with every `{{name}}` replaced by `inputs[name]`. A missing variable is an error that names it
    (`strict`), or empty (the few-shot examples: a variable just added to the template has no column yet)."""
    missing = [v for v in variables(template) if v not in inputs]
    if not strict:
        inputs = {**dict.fromkeys(missing, ""), **inputs}
    elif missing:
        raise KollmError(f"missing input {', '.join(repr(m) for m in missing)}; send it in \"inputs\"")
    # one pass over the template: a value that itself contains {{x}} is not expanded again
    return VARIABLE.sub(lambda m: str(inputs[m.group(1)]), template)


def output_prefix(prompt: str) -> str:
    """What goes between a filled prompt and its output: "검색어: 유모챠\\n교정:" + "유모차" reads as "교정: 유모차",
    so a space, unless the prompt already ends in whitespace (or is empty)."""
    return "" if not prompt or prompt[-1].isspace() else " "
