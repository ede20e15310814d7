"""The engine's own forward pass for the families it serves most: Llama, Qwen2, Qwen3 (kollm's checkpoints) and
Gemma 3. Any other model runs through transformers' forward (kv.py's cache, engine.py's masks).

Why: transformers' forward is general, and a decode step pays for it in Python. Measured here (2 cores, one
decode step, one stream): the kollm speedrun checkpoint (3 layers) 2.7 ms in transformers, most of it Python
and ~60 small ops per layer. This forward uses the same weights and transformers' own rotary and activation
modules, but
  - runs q/k/v as one GEMM and gate/up as one GEMM (in MKL's fast orientation, packed.py), on views of the
    same memory;
  - normalises q and k together and rotates them together;
  - writes K/V straight into the slot cache and attends over a view of it: a decode step attends each query
    head group as a block (no repeated K/V for grouped-query attention), a packed prefill runs one attention per
    prompt chunk (no mask across prompts), and a step that does both (`Mixed`) shares every GEMM and the head
    between them and attends each part as it would alone;
  - adds LoRA deltas per row (serve/lora.py): the plan says which rows run which adapter, so the base and several
    adapters decode in the same step, each delta added to its slice of the fused q/k/v or gate/up output.
Tests compare it token for token with transformers' `generate` for each family (tests/serve/test_serve_families.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kollm.runtime import drop_file_pages
from kollm.serve.head import OutputHead
from kollm.serve.kv import Decode, Mixed, Prefill, SlotCache, allowed, windows
from kollm.serve.packed import PackedLinear

FAMILIES = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma3ForCausalLM"}


@dataclass
class _Layer:
    norm_attn: torch.Tensor  # RMSNorm weights, Gemma's (1 + w) folded in
    norm_mlp: torch.Tensor
    post_attn: torch.Tensor | None  # Gemma 3's sandwich norms
    post_mlp: torch.Tensor | None
    qk_norm: torch.Tensor | None  # [heads + kv_heads, head_dim]: q_norm for the query heads, k_norm for the rest
    qkv: PackedLinear
    o: PackedLinear
    gate_up: PackedLinear
    down: PackedLinear
    act: nn.Module
    scale: float
    window: int  # 0: full attention
    rope: str  # which rotary table (Gemma 3 has one per layer type)


class Forward:
    @classmethod
    def build(cls, model: nn.Module, argmax_head: bool = True) -> Forward | None:
        """The lean forward for `model`, or None when it is not a family (or a variant) this file covers.
        `argmax_head`: a big CPU head may answer argmax-only steps from a float16 copy (serve/head.py)."""
        cfg = model.config
        if type(model).__name__ not in FAMILIES or getattr(cfg, "attn_logit_softcapping", None):
            return None
        return cls(model, argmax_head)

    def __init__(self, model: nn.Module, argmax_head: bool = True) -> None:
        inner = model.model
        cfg = model.config
        self.embed, self.rotary = inner.embed_tokens, inner.rotary_emb
        self.gemma = cfg.model_type.startswith("gemma")
        self.eps = float(cfg.rms_norm_eps)
        self.heads, self.kv_heads = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        self.by_type = "layer_type" in inspect.signature(self.rotary.forward).parameters
        fused = [m.weight.detach() for layer in inner.layers for m in (
            layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.mlp.gate_proj,
            layer.mlp.up_proj)]
        self.layers = [self._layer(layer, w) for layer, w in zip(inner.layers, windows(cfg), strict=True)]
        drop_file_pages(fused)  # read once from the mapped weights file to fuse them, never again
        del fused
        self.norm = self._norm_weight(inner.norm)
        self.head = OutputHead(model.lm_head.weight, model.lm_head.bias,
                               float(getattr(cfg, "final_logit_softcapping", None) or 0), argmax_head)

    def _norm_weight(self, norm: nn.Module) -> torch.Tensor:
        w = norm.weight.detach().float()
        return 1.0 + w if self.gemma else w

    def _layer(self, layer: nn.Module, window: int) -> _Layer:
        a, m = layer.self_attn, layer.mlp
        qk = None
        if hasattr(a, "q_norm"):
            qk = torch.cat([self._norm_weight(a.q_norm)[None].expand(self.heads, -1),
                            self._norm_weight(a.k_norm)[None].expand(self.kv_heads, -1)])
        return _Layer(
            norm_attn=self._norm_weight(layer.input_layernorm),
            norm_mlp=self._norm_weight(layer.pre_feedforward_layernorm if self.gemma
                                       else layer.post_attention_layernorm),
            post_attn=self._norm_weight(layer.post_attention_layernorm) if self.gemma else None,
            post_mlp=self._norm_weight(layer.post_feedforward_layernorm) if self.gemma else None,
            qk_norm=qk, qkv=_fuse(a.q_proj, a.k_proj, a.v_proj), o=_packed(a.o_proj),
            gate_up=_fuse(m.gate_proj, m.up_proj), down=_packed(m.down_proj),
            act=m.act_fn, scale=float(a.scaling), window=window,
            rope=getattr(a, "layer_type", None) or "full_attention")

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = x if x.dtype == torch.float32 else x.float()  # norms in float32, as transformers' do
        y = F.rms_norm(y, (x.shape[-1],), w, self.eps) if w.dim() == 1 else \
            F.rms_norm(y, (x.shape[-1],), None, self.eps) * w  # per-head weights
        return y if y.dtype == x.dtype else y.to(x.dtype)

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, pos: torch.Tensor, plan: Decode | Prefill | Mixed, cache: SlotCache,
                 rows: torch.Tensor | None = None, argmax_only: bool = False) -> torch.Tensor:
        """Logits [R, vocab] (float32) for tokens `ids` [T] at positions `pos` [T]: every token of a decode
        step, or the rows `rows` of a packed prefill (or of a mixed step's tokens). K/V of all T tokens go into
        `cache` as `plan` says. `argmax_only`: each row's argmax token [R] instead of its logits (serve/head.py;
        `self.head.exact_row` gives a row's logits afterwards)."""
        h = self.embed(ids)  # [T, hidden]
        tables = {}
        for layer in self.layers:
            if layer.rope not in tables:
                args = (layer.rope,) if self.by_type else ()
                cos, sin = self.rotary(h[None], pos[None], *args)
                half = sin.shape[-1] // 2  # rotate_half(x) * sin == flip(x) * (-sin[:half], sin[half:])
                sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
                tables[layer.rope] = (cos[0, :, None], sin[0, :, None])  # [T, 1, head_dim]
        masks = _Masks(plan, pos)
        lora = plan.lora
        H, KV, d = self.heads, self.kv_heads, self.head_dim
        for i, layer in enumerate(self.layers):
            x = self._rms(h, layer.norm_attn)
            qkv = layer.qkv.forward(x)
            if lora is not None:
                lora.add(qkv, x, i, "qkv")
            qk = qkv[:, :(H + KV) * d].view(-1, H + KV, d)
            if layer.qk_norm is not None:
                qk = self._rms(qk, layer.qk_norm)
            cos, sin = tables[layer.rope]
            qk = torch.addcmul(qk * cos, qk.unflatten(-1, (2, d // 2)).flip(-2).flatten(-2), sin)
            q, k = qk[:, :H], qk[:, H:]
            v = qkv[:, (H + KV) * d:].view(-1, KV, d)
            kc, vc = cache.layer(i, KV, d, h.dtype, h.device)
            attn = _attend(q, k, v, kc, vc, plan, masks, layer)  # [T, H * d]
            y = layer.o.forward(attn)
            if lora is not None:
                lora.add(y, attn, i, "o")
            if layer.post_attn is not None:
                y = self._rms(y, layer.post_attn)
            h = h + y
            x = self._rms(h, layer.norm_mlp)
            gu = layer.gate_up.forward(x)
            if lora is not None:
                lora.add(gu, x, i, "gate_up")
            n = gu.shape[-1] // 2
            x = layer.act(gu[:, :n]) * gu[:, n:]
            y = layer.down.forward(x)
            if lora is not None:
                lora.add(y, x, i, "down")
            if layer.post_mlp is not None:
                y = self._rms(y, layer.post_mlp)
            h = h + y
        if rows is not None:
            h = h[rows]
        h = self._rms(h, self.norm)
        return self.head.argmax(h) if argmax_only else self.head.forward(h)


def _fuse(*linears: nn.Linear) -> PackedLinear:
    """One GEMM for several projections of the same input. The transformers modules keep working (prompt
    scoring runs through them): their weights become views of the fused one, so memory is not doubled."""
    weight = torch.cat([m.weight.detach() for m in linears])
    bias = None if linears[0].bias is None else torch.cat([m.bias.detach() for m in linears])
    at = 0
    for m in linears:
        n = m.weight.shape[0]
        m.weight = nn.Parameter(weight[at:at + n], requires_grad=False)
        if bias is not None:
            m.bias = nn.Parameter(bias[at:at + n], requires_grad=False)
        at += n
    return PackedLinear(weight, bias)


def _packed(linear: nn.Linear) -> PackedLinear:
    return PackedLinear(linear.weight, linear.bias)


class _Masks:
    """Boolean attention masks, built once per forward and shared by the layers with the same window."""

    def __init__(self, plan: Decode | Prefill | Mixed, pos: torch.Tensor) -> None:
        self.plan, self.pos = plan, pos
        self.cache: dict = {}
        if isinstance(plan, Mixed):  # each part's masks, as if it ran alone
            B = len(plan.decode.pos)
            self.parts = (_Masks(plan.decode, pos[:B]), _Masks(plan.prefill, pos[B:]))

    def decode(self, window: int) -> tuple[int, torch.Tensor]:
        """(first key position to attend, mask [B, 1, 1, keys]) for a decode step."""
        if window not in self.cache:
            pos, length = self.plan.pos, self.plan.length
            lo = max(0, int(pos.min()) - window + 1) if window else 0
            ok = allowed(pos[:, None], torch.arange(lo, length, device=pos.device)[None], window)
            self.cache[window] = (lo, ok[:, None])
        return self.cache[window]

    def short(self) -> _Short | None:
        """The packed prefill's segments as one padded batch, when there are several and all are short."""
        if "short" not in self.cache:
            segs = self.plan.segments
            self.cache["short"] = _Short(segs, self.pos.device) \
                if len(segs) > 1 and max(n for _, _, n in segs) <= SHORT_MAX else None
        return self.cache["short"]

    def chunk(self, start: int, n: int, window: int) -> torch.Tensor | None:
        """Mask [n, start + n] for a prompt chunk at positions start..start+n-1; None where plain causal."""
        if start == 0 and (not window or n <= window):
            return None
        dev = self.pos.device
        return allowed(torch.arange(start, start + n, device=dev), torch.arange(start + n, device=dev), window)


SHORT_MAX = 64  # a packed prefill whose segments are all this short (new prompts' tails, speculation's checks)
# attends as one padded batch: one SDPA call and two cache writes a layer instead of three calls per segment
# (63 prompts of ~12 tokens after a shared 82-token prefix: ~0.2 s of Python saved per step, 18 layers)


class _Short:
    """Where each token of a packed prefill of short segments sits in a padded batch [segments, longest, ...]."""

    def __init__(self, segments: list[tuple[int, int, int]], device: torch.device) -> None:
        slots = [s for s, _, _ in segments]
        self.n = max(n for _, _, n in segments)
        self.length = max(start + n for _, start, n in segments)
        first = slots[0]
        # consecutive slots (as admitted) attend over a view of the cache; any others over a gathered copy
        self.slots = slice(first, first + len(slots)) if slots == list(range(first, first + len(slots))) \
            else torch.tensor(slots, device=device)
        self.tok_slot = torch.tensor([s for s, _, n in segments for _ in range(n)], device=device)
        self.tok_pos = torch.tensor([p for _, start, n in segments for p in range(start, start + n)], device=device)
        self.where = torch.tensor([i * self.n + j for i, (_, _, n) in enumerate(segments) for j in range(n)],
                                  device=device)  # each token's row in the flattened [segments * longest]
        # padding queries take their segment's last position: they see only keys a real query sees
        qpos = torch.tensor([[start + min(j, n - 1) for j in range(self.n)] for _, start, n in segments],
                            device=device)
        self.qpos = qpos[:, None, :]  # [segments, 1, longest]
        self.kpos = torch.arange(self.length, device=device)[None, None]
        self.masks: dict[int, torch.Tensor] = {}

    def mask(self, window: int) -> torch.Tensor:
        if window not in self.masks:
            self.masks[window] = allowed(self.qpos, self.kpos, window)  # [segments, 1, longest, keys]
        return self.masks[window]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor,
            plan: Decode | Prefill | Mixed, masks: _Masks, layer: _Layer) -> torch.Tensor:
    H, KV, d = q.shape[1], k.shape[1], q.shape[2]
    if isinstance(plan, Mixed):  # the decode rows' tokens come first
        B, (dm, pm) = len(plan.decode.pos), masks.parts
        return torch.cat([_attend(q[:B], k[:B], v[:B], kc, vc, plan.decode, dm, layer),
                          _attend(q[B:], k[B:], v[B:], kc, vc, plan.prefill, pm, layer)])
    if isinstance(plan, Decode):
        B = q.shape[0]
        slots = torch.arange(B, device=q.device)
        kc[slots, :, plan.pos] = k
        vc[slots, :, plan.pos] = v
        lo, mask = masks.decode(layer.window)
        # one query per row: the g = H / KV query heads that share a K/V head attend as a block of g queries
        out = F.scaled_dot_product_attention(q.reshape(B, KV, H // KV, d), kc[:B, :, lo:plan.length],
                                             vc[:B, :, lo:plan.length], attn_mask=mask, scale=layer.scale)
        return out.reshape(B, H * d)
    short = masks.short()
    if short is not None:
        kc[short.tok_slot, :, short.tok_pos] = k
        vc[short.tok_slot, :, short.tok_pos] = v
        qp = q.new_zeros(len(plan.segments) * short.n, H, d)
        qp[short.where] = q
        out = F.scaled_dot_product_attention(
            qp.view(-1, short.n, H, d).transpose(1, 2), kc[short.slots, :, :short.length],
            vc[short.slots, :, :short.length], attn_mask=short.mask(layer.window), scale=layer.scale,
            enable_gqa=H != KV)  # [segments, H, longest, d]
        return out.transpose(1, 2).reshape(-1, H * d)[short.where]
    outs, at = [], 0
    for slot, start, n in plan.segments:
        kc[slot, :, start:start + n] = k[at:at + n].transpose(0, 1)
        vc[slot, :, start:start + n] = v[at:at + n].transpose(0, 1)
        mask = masks.chunk(start, n, layer.window)
        out = F.scaled_dot_product_attention(
            q[at:at + n].transpose(0, 1)[None], kc[slot:slot + 1, :, :start + n], vc[slot:slot + 1, :, :start + n],
            attn_mask=mask, is_causal=mask is None, scale=layer.scale, enable_gqa=H != KV)
        outs.append(out[0].transpose(0, 1).reshape(n, H * d))
        at += n
    return outs[0] if len(outs) == 1 else torch.cat(outs)
