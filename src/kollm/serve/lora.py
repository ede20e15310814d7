"""LoRA adapters served side by side on one base model (vLLM's `--enable-lora --lora-modules name=DIR`).

An adapter is a plain PEFT folder (`adapter_config.json` + `adapter_model.safetensors`, as peft's `save_pretrained`
writes it), read with peft's own config class and safetensors' own loader. What kollm applies is plain LoRA on the
attention and MLP projections (q/k/v/o, gate/up/down, any subset): y += scale * (x @ A.T) @ B.T, with
scale = lora_alpha / r (or / sqrt(r) with `use_rslora`), per module as peft's rank_pattern/alpha_pattern say.
Anything else an adapter may carry (DoRA, modules_to_save, biases, embedding or output-head targets, ...) would
change the answers if ignored, so it is refused by name, with the fix.

Every row of an engine step may run a different adapter (or none): `LoraRows` says which rows run which adapter
for one forward, and adds each adapter's delta to its rows only. serve/forward.py fuses q/k/v and gate/up into one
GEMM each, so an adapter's deltas are fused the same way (`Adapter.fuse`): its A matrices stacked (scale folded
in) and its B matrices block-diagonal over the fused output, one pair of small GEMMs per fused projection.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kollm.errors import KollmError

# The engine's fused projections (serve/forward.py) and the modules each is made of, in output order.
GROUPS = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
          "down": ("down_proj",)}
MODULES = {m: g for g, ms in GROUPS.items() for m in ms}
_PART = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
         "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
_WHERE = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn|mlp)\.(\w+)$")
_PREFIX = "base_model.model."  # peft's prefix on every saved key
_HEADS = re.compile(r"(?:^|\.)(?:lm_head|embed_tokens)\.")
_MERGE = "merge it into the base model (peft's merge_and_unload, then save_pretrained) and serve that folder"
# Config switches that change what an adapter computes beyond plain LoRA: refused rather than ignored.
_UNSUPPORTED = {
    "use_dora": "DoRA (use_dora)",
    "modules_to_save": "modules_to_save (whole trained copies of modules)",
    "lora_bias": "LoRA biases (lora_bias)",
    "trainable_token_indices": "trainable token embeddings (trainable_token_indices)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "layer_replication": "layer_replication",
    "target_parameters": "target_parameters (LoRA on raw parameters)",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D layers)",
    "use_qalora": "QALoRA (use_qalora)",
}
# initialisations that rewrite the base weights too: the adapter alone does not reproduce the trained model
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")
_uids = itertools.count(1)  # 0 is the base model; an id is never reused, so stale prefix-cache KV never matches


@dataclass(eq=False)
class Adapter:
    name: str
    path: str
    uid: int  # unique for the process: keys the prefix cache (a reloaded name gets a new one)
    modules: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, float]]  # (layer, module) -> A, B, scale
    warning: str | None = None  # a mismatch worth saying but not refusing (the base model's name)
    fused: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def fuse(self, model: nn.Module) -> None:
        """Per (layer, fused group): scale * A of its modules stacked [R, in], and B block-diagonal over the
        group's fused output [out, R], so one fused projection's delta is two GEMMs whatever subset it targets."""
        for layer in sorted({i for i, _ in self.modules}):
            for group, names in GROUPS.items():
                parts = [(m, self.modules.get((layer, m))) for m in names]
                if not any(w is not None for _, w in parts):
                    continue
                outs = [_linear(model, layer, m).out_features for m in names]
                rank = sum(w[0].shape[0] for _, w in parts if w is not None)
                a = torch.cat([w[0] * w[2] for _, w in parts if w is not None])
                b = a.new_zeros(sum(outs), rank)
                row = col = 0
                for (_, w), out in zip(parts, outs, strict=True):
                    if w is not None:
                        r = w[0].shape[0]
                        b[row:row + out, col:col + r] = w[1]
                        col += r
                    row += out
                self.fused[(layer, group)] = (a.contiguous(), b.contiguous())


def parse_modules(specs: list[str]) -> list[tuple[str, str]]:
    """`--lora NAME=DIR` values as (name, dir); KollmError for a malformed one or a repeated name."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise KollmError(f"--lora {spec!r} is not NAME=DIR; pass e.g. --lora sql=adapters/sql (a peft folder)")
        if any(n == name for n, _ in out):
            raise KollmError(f"--lora names {name!r} twice; give each adapter its own name")
        out.append((name, path))
    return out


def read_config(path: str | Path) -> object:
    """The adapter's peft LoraConfig, after the checks that need no model: a peft LoRA folder, nothing kollm
    would have to ignore."""
    from peft import PeftConfig

    p = Path(path).expanduser()
    what = f"LoRA adapter {path}"
    if not p.is_dir():
        raise KollmError(f"{what}: no such folder; pass a folder written by peft's save_pretrained "
                         "(adapter_config.json + adapter_model.safetensors)")
    if not (p / "adapter_config.json").is_file():
        raise KollmError(f"{what} is not a peft adapter folder (no adapter_config.json); pass the folder peft's "
                         "save_pretrained wrote")
    try:
        cfg = PeftConfig.from_pretrained(str(p))
    except Exception as e:  # noqa: BLE001 - peft's own reader: any failure is a bad file, said in one line
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise KollmError(f"{what}: cannot read adapter_config.json ({first}); re-save it with peft") from None
    kind = str(getattr(getattr(cfg, "peft_type", None), "value", getattr(cfg, "peft_type", "")))
    if kind != "LORA":
        raise KollmError(f"{what} is a {kind or 'non-LoRA'} adapter; kollm serve applies LoRA adapters only: "
                         f"{_MERGE}")
    for attr, label in _UNSUPPORTED.items():
        if getattr(cfg, attr, None):
            raise KollmError(f"{what} uses {label}, which kollm serve does not apply: {_MERGE}")
    if getattr(cfg, "bias", "none") != "none":
        raise KollmError(f"{what} trains biases (bias={cfg.bias!r}), which kollm serve does not apply: {_MERGE}")
    targets = cfg.target_modules if isinstance(cfg.target_modules, (list, set, tuple)) else []
    heads = sorted(t for t in targets if t in ("lm_head", "embed_tokens"))
    if heads:
        raise KollmError(f"{what} adapts {', '.join(heads)} (the embeddings or the output head), which kollm serve "
                         f"does not apply: {_MERGE}")
    init = getattr(cfg, "init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise KollmError(f"{what} was initialised with {init!r}, which also changes the base weights; save it "
                         "with path_initial_model_for_weight_conversion (a plain LoRA) or " + _MERGE)
    return cfg


def read_adapter(path: str | Path, model: nn.Module, name: str) -> Adapter:
    """The adapter at `path` for `model`, checked: every weight belongs to a projection kollm applies LoRA to,
    exists in `model` and has its shape; rank and scale as peft computes them. KollmError names what is wrong."""
    from peft.utils.other import get_pattern_key
    from safetensors.torch import load_file

    cfg = read_config(path)
    p, what = Path(path).expanduser(), f"LoRA adapter {path}"
    file = p / "adapter_model.safetensors"
    if not file.is_file():
        old = " (it has the old adapter_model.bin: re-save with safe_serialization=True)" \
            if (p / "adapter_model.bin").is_file() else ""
        raise KollmError(f"{what} has no adapter_model.safetensors{old}; save it with peft's save_pretrained")
    try:
        weights = load_file(str(file), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors' own reader: a broken file, said in one line
        raise KollmError(f"{what}: cannot read adapter_model.safetensors ({e}); re-save it with peft") from None
    named = dict(model.named_modules())
    base = getattr(cfg, "base_model_name_or_path", None) or "an unnamed model"
    family = type(model).__name__
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key in weights:  # first: peft also saves the whole embedding or head it adapted, which is not LoRA's
        if "lora_embedding" in key or _HEADS.search(key):
            raise KollmError(f"{what} adapts the embeddings or the output head ({key}), which kollm serve does not "
                             f"apply: {_MERGE}")
    for key, t in weights.items():
        m = re.fullmatch(r"(.+)\.lora_([AB])\.weight", key.removeprefix(_PREFIX))
        if m is None:
            raise KollmError(f"{what} has weight {key}, which is not plain LoRA's lora_A/lora_B: {_MERGE}")
        pairs.setdefault(m.group(1), {})[m.group(2)] = t
    if not pairs:
        raise KollmError(f"{what} has no LoRA weights; save the trained adapter with peft's save_pretrained")
    modules: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, float]] = {}
    dtype = next(model.parameters()).dtype
    for mname, ab in sorted(pairs.items()):
        if mname.endswith(("embed_tokens", "lm_head")):
            raise KollmError(f"{what} targets {mname}, the embeddings or output head, which kollm serve does not "
                             f"apply: {_MERGE}")
        where = _WHERE.search(mname)
        if where is None or where.group(3) not in MODULES or _PART[where.group(3)] != where.group(2):
            raise KollmError(f"{what} targets {mname}; kollm serve applies LoRA to q_proj, k_proj, v_proj, o_proj, "
                             f"gate_proj, up_proj and down_proj only: {_MERGE}")
        target = named.get(mname)
        target = getattr(target, "base_layer", target)  # a model peft already wrapped (the reference engine)
        if target is None or not hasattr(target, "in_features"):
            raise KollmError(f"{what} has weights for {mname}, which this {family} does not have: it was trained "
                             f"for another model ({base}); pass an adapter trained on this one")
        if set(ab) != {"A", "B"}:
            raise KollmError(f"{what} has lora_{''.join(ab)} but not both lora_A and lora_B for {mname}; "
                             "re-save it with peft")
        a, b = ab["A"], ab["B"]
        ranks, alphas = cfg.rank_pattern or {}, cfg.alpha_pattern or {}  # peft's per-module overrides
        r = int(ranks.get(get_pattern_key(list(ranks), mname), cfg.r))
        if a.dim() != 2 or b.dim() != 2 or a.shape != (r, target.in_features) or \
                b.shape != (target.out_features, r):
            raise KollmError(f"{what}: {mname}'s LoRA shapes A {tuple(a.shape)}, B {tuple(b.shape)} do not fit this "
                             f"model's {target.out_features}x{target.in_features} projection at rank {r}: it was "
                             f"trained for another model ({base}); pass an adapter trained on this one")
        alpha = float(alphas.get(get_pattern_key(list(alphas), mname), cfg.lora_alpha))
        scale = alpha / r ** 0.5 if cfg.use_rslora else alpha / r  # peft's rule, rsLoRA included
        dev = target.weight.device
        modules[(int(where.group(1)), where.group(3))] = (a.to(dev, dtype), b.to(dev, dtype), scale)
    warning = None
    served = str(getattr(model.config, "name_or_path", "") or "")
    if base != "an unnamed model" and served and not _same_model(base, served):
        warning = (f"LoRA adapter {name!r} was trained on {base}, not {served}; serving it anyway (check it is "
                   "the same model)")
    return Adapter(name, str(path), next(_uids), modules, warning)


def _same_model(a: str, b: str) -> bool:
    """Loosely the same model: the same folder, or the same last path part (a hub id against its download)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return pa.name.lower() == pb.name.lower()


def _linear(model: nn.Module, layer: int, module: str) -> nn.Module:
    block = getattr(model.model.layers[layer], _PART[module])
    m = getattr(block, module)
    return getattr(m, "base_layer", m)


MAX_SIDE_BY_SIDE = 8  # adapters in one decode step up to which the side-by-side product pays (see LoraRows)


class Stacks:
    """The fused weights of the adapters one decode step mixes, side by side: A's stacked [sum R, in], B's
    concatenated [out, sum R], and which adapter owns each column. Built per (layer, projection) when first
    used and kept for the next steps while the same adapters are decoding (a batch's adapters change only when
    a request of a new one joins or the last of one leaves); one set at a time, so at most one extra copy of
    the decoding adapters' weights."""

    def __init__(self) -> None:
        self.uids: tuple[int, ...] = ()
        self.adapters: list[Adapter] = []
        self.weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple] | None] = {}

    def use(self, adapters: list[Adapter]) -> None:
        uids = tuple(a.uid for a in adapters)
        if uids != self.uids:
            self.uids, self.adapters, self.weights = uids, adapters, {}

    def get(self, layer: int, group: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple] | None:
        """(A's, B's, each column's adapter, the columns' layout: (adapter, rank) pairs) for one projection."""
        key = (layer, group)
        if key not in self.weights:
            parts = [(i, a.fused[key]) for i, a in enumerate(self.adapters) if key in a.fused]
            a = torch.cat([w[0] for _, w in parts]) if parts else None
            self.weights[key] = None if a is None else (
                a, torch.cat([w[1] for _, w in parts], dim=1),
                torch.tensor([i for i, w in parts for _ in range(w[0].shape[0])], device=a.device),
                tuple((i, w[0].shape[0]) for i, w in parts))
        return self.weights[key]


class LoraRows:
    """Which rows of one forward run which adapter (rows of the base run none), and the deltas that follow.

    Two ways, by what bench/serve_lora.py measured on Gemma-3-270M's shapes (4 adapters on every projection,
    rows spread evenly, 2 cores):
      - grouped rows: each adapter's rows gathered (index_select), through its two small GEMMs and added back
        (index_add_); no gather when one adapter has every row. Four ops per adapter and projection: right for a
        packed prefill (many rows per adapter) and a decode step of one adapter. A bmm over per-row gathered A and
        B instead copies every row's weights: slower at every batch up to 16 rows, ranks 8 and 16.
      - side by side (a decode step mixing 2..MAX_SIDE_BY_SIDE adapters): every row times all the step's A's in
        one GEMM, each row's columns of other adapters zeroed by a mask, then one GEMM with all their B's (Stacks):
        three ops per projection whatever the number of adapters. The wasted products are small (rank x
        adapters columns); past ~8 adapters they cost more than the grouped ops."""

    def __init__(self, groups: list[tuple[Adapter, torch.Tensor | None]], stacks: Stacks | None = None,
                 owner: torch.Tensor | None = None) -> None:
        self.groups = groups  # (adapter, its rows; None: all rows)
        self.stacks, self.owner = stacks, owner  # side by side: the weights, each row's adapter (-1: base)
        self.masks: dict[tuple, torch.Tensor] = {}  # by column layout: most layers share one

    @classmethod
    def build(cls, runs: list[tuple[Adapter | None, int]], device: torch.device, stacks: Stacks | None = None,
              ) -> LoraRows | None:
        """From (adapter or None, row count) in row order: a decode step's rows, a packed prefill's segments.
        None when no row runs an adapter (the base alone: nothing to add). `stacks`: side by side when the rows
        mix adapters (a decode step)."""
        rows: dict[int, tuple[Adapter, list[int]]] = {}
        at = 0
        for adapter, n in runs:
            if adapter is not None:
                rows.setdefault(adapter.uid, (adapter, []))[1].extend(range(at, at + n))
            at += n
        if not rows:
            return None
        if stacks is not None and 2 <= len(rows) <= MAX_SIDE_BY_SIDE:
            stacks.use(sorted((a for a, _ in rows.values()), key=lambda a: a.uid))  # whatever the rows' order
            index = {uid: i for i, uid in enumerate(stacks.uids)}
            owner = [-1] * at
            for uid, (_, ix) in rows.items():
                for i in ix:
                    owner[i] = index[uid]
            return cls([], stacks, torch.tensor(owner, device=device))
        return cls([(a, None if len(ix) == at else torch.tensor(ix, device=device)) for a, ix in rows.values()])

    def add(self, y: torch.Tensor, x: torch.Tensor, layer: int, group: str) -> None:
        """y [T, out] += each adapter's delta of fused projection `group` in `layer`, on that adapter's rows."""
        if self.stacks is not None:
            w = self.stacks.get(layer, group)
            if w is not None:
                a, b, cols, layout = w
                mask = self.masks.get(layout)
                if mask is None:  # rows x columns: 1 where the column is the row's own adapter's
                    mask = self.masks[layout] = (self.owner[:, None] == cols[None, :]).to(y.dtype)
                y.addmm_((x @ a.T).mul_(mask), b.T)
            return
        for adapter, idx in self.groups:
            w = adapter.fused.get((layer, group))
            if w is None:
                continue
            a, b = w
            if idx is None:
                y.addmm_(x @ a.T, b.T)
            else:
                y.index_add_(0, idx, (x.index_select(0, idx) @ a.T) @ b.T)
