"""Recipes: one TOML file, one section per stage, each section fills that stage's config dataclass.

    [data]      -> kollm.data.DataConfig
    [tokenizer] -> kollm.tokenizer.TokenizerConfig
    [model]     -> kollm.model.ModelConfig
    [train]     -> kollm.train.TrainConfig
    [eval]      -> kollm.eval.EvalConfig
    [serve]     -> kollm.serve.ServeConfig
    [studio]    -> kollm.studio.StudioConfig

A command parses its recipe once with `read_recipe`, naming the sections it uses: a section it does not
use is an error (a recipe's [data] must not be silently ignored by `kollm train`), and so is an unknown key
(a typo must not silently fall back to a default). Defaults live in the dataclasses only; CLI flags are
applied on top with `override`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from kollm.errors import KollmError

T = TypeVar("T")


def load_recipe(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise KollmError(f"recipe {path} does not exist; pass an existing .toml file (see recipes/)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise KollmError(f"recipe {path} is not valid TOML ({e}); fix the file and retry") from None


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Check (and gently convert) a recipe/CLI value to the field's annotated type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        typ = args[0]
        origin = typing.get_origin(typ)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise KollmError(f"{name} must be a list, got {value!r}")
        return list(value) if origin is list else tuple(value)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float, str, bool) and not isinstance(value, typ):
        raise KollmError(f"{name} must be {typ.__name__}, got {value!r}")
    return value


def build(cls: type[T], values: dict[str, Any] | None = None, section: str = "") -> T:
    """Make a `cls` dataclass from a dict, rejecting keys that are not fields."""
    values = values or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        where = f"[{section}] " if section else ""
        raise KollmError(
            f"unknown recipe key {where}{', '.join(unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    label = f"[{section}]." if section else ""
    return cls(**{k: _coerce(f"{label}{k}", v, hints[k]) for k, v in values.items()})


def override(cfg: T, **changes: Any) -> T:
    """Apply CLI flags: only values that were given (not None) replace the recipe's."""
    given = {k: v for k, v in changes.items() if v is not None}
    return build(type(cfg), {**dataclasses.asdict(cfg), **given})


def section(recipe: dict[str, dict[str, Any]], name: str, cls: type[T]) -> T:
    return build(cls, recipe.get(name, {}), section=name)


def read_recipe(path: str | Path | None, command: str, uses: dict[str, type]) -> dict[str, Any]:
    """The configs of the sections `command` uses, parsed once from `path` (defaults where a section is absent,
    or with no recipe). The result also says which sections the recipe had: `"<name>" in result["present"]`."""
    r = load_recipe(path) if path else {}
    extra = sorted(set(r) - set(uses))
    if extra:
        reads = ", ".join(f"[{s}]" for s in uses)
        raise KollmError(f"`kollm {command}` does not use the [{extra[0]}] section of {path} (it reads {reads}); "
                         "remove it, or run the command that uses it")
    return {**{name: section(r, name, cls) for name, cls in uses.items()}, "present": set(r)}
