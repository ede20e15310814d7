"""Stage 3: decoder-only LMs with the Qwen3 layout (RMSNorm, rotary, QK-norm, SwiGLU) so checkpoints load in
`transformers` with no remote code."""

from kollm.model.config import ModelConfig
from kollm.model.gpt import KollmLM
from kollm.model.hf import export_hf, load_kollm_from_hf

__all__ = ["KollmLM", "ModelConfig", "export_hf", "load_kollm_from_hf"]
