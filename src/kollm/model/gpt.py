"""kollm's own decoder-only LM. Parameter names match `transformers`' Qwen3ForCausalLM one for one,
so export is a rename-free `save_file(state_dict)` and HF reproduces our logits exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kollm.model.config import ModelConfig
from kollm.model.loss import head_cross_entropy


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_cache(cfg: ModelConfig, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # HF's "rotate_half" convention (not interleaved pairs), so exported weights need no permutation.
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.width, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.width, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.width, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.width, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)  # QK-norm keeps attention logits bounded
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        # One matmul for q, k and v (weights concatenated on the fly; the parameters stay HF's three): at small
        # widths one wide GEMM runs much closer to the machine's peak than three narrow ones.
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        q, k, v = F.linear(x, w).split([self.n_heads * self.hd, self.n_kv * self.hd, self.n_kv * self.hd], dim=-1)
        q = self.q_norm(q.view(B, T, self.n_heads, self.hd)).transpose(1, 2)
        k = self.k_norm(k.view(B, T, self.n_kv, self.hd)).transpose(1, 2)
        v = v.view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.width, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.width, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight])).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.width, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.width, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    """The `model.` prefix of HF's state dict."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.width)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.width, cfg.norm_eps)


class KollmLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.require_resolved()
        self.cfg = cfg
        self.model = Body(cfg)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rope_cache(cfg, cfg.max_seq_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.train_layers: list[nn.Module] | None = None  # compiled blocks for the training path (compile_blocks)
        self.reset_parameters()

    def compile_blocks(self) -> None:
        """torch.compile each block for the training forward only (fixed shapes, so one compilation): it fuses
        rotary, QK-norm, RMSNorm and SwiGLU between the matmuls (measured ~10% faster per step on the 2-core
        CPU, while compiling the whole loss was slower). Scoring and generation, whose shapes vary, stay eager.
        A plain list, not a submodule: the state dict keeps HF's names."""
        self.train_layers = [torch.compile(block) for block in self.model.layers]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                # residual-branch outputs shrink with depth so the residual stream starts ~unit scale
                p.normal_(0.0, std / (2 * self.cfg.depth) ** 0.5)
            else:
                p.normal_(0.0, std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab); with `targets`, the mean training loss instead (the head and the loss are
        fused there, see kollm.model.loss). One entry point, so FSDP's hooks see both uses."""
        T = idx.shape[1]
        if T > self.cos.shape[0]:
            raise ValueError(f"sequence of {T} tokens is longer than max_seq_len={self.cos.shape[0]}")
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.model.embed_tokens(idx)
        layers = self.train_layers if targets is not None and self.train_layers and self.training else self.model.layers
        for block in layers:
            x = block(x, cos, sin)
        x = self.model.norm(x)
        if targets is not None:
            return head_cross_entropy(x, self.lm_head.weight, targets)
        return self.lm_head(x)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self(idx, targets)
