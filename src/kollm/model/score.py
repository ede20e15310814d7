"""Score text with a causal LM: total negative log-likelihood and bits-per-byte.

bits-per-byte = NLL of the text in nats / (ln 2 * UTF-8 bytes of the text). Unlike loss per token it
does not depend on the tokenizer, so models with different vocabularies compare fairly; 8.0 is the
bound of a uniform guess over bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from kollm.errors import KollmError
from kollm.special_tokens import encode_with_bos

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def windows(ids: list[int], ctx: int) -> list[tuple[list[int], list[int]]]:
    """Cut one document (BOS first) into (inputs, targets) windows of at most `ctx` tokens.

    Every token after BOS is predicted exactly once; later windows overlap the previous one by half a
    window so each prediction still sees at least ctx/2 tokens of context (targets already scored are
    masked with -100).
    """
    out, scored_to, stride = [], 1, max(1, ctx // 2)
    start = 0
    while scored_to < len(ids):
        end = min(start + ctx + 1, len(ids))
        inp, tgt = ids[start:end - 1], ids[start + 1:end]
        tgt = [t if start + 1 + i >= scored_to else -100 for i, t in enumerate(tgt)]
        out.append((inp, tgt))
        scored_to = end
        start += stride if start + ctx + 1 < len(ids) else ctx
    return out


@torch.no_grad()
def text_nll(
    logits_fn: LogitsFn, tokenizer: object, texts: Sequence[str], ctx: int, batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> tuple[float, int]:
    """Return (NLL in nats, UTF-8 bytes) of `texts`, each scored as its own document after BOS."""
    # Every byte must be predicted from something, the first token too. A tokenizer without BOS (Qwen) gets EOS,
    # which ended the document before in pretraining: lm-eval's HFLM scores rolling log-likelihood the same way
    # (`prefix_token_id`), so bits-per-byte here and there agree. Dropping the first token instead would count its
    # bytes with no loss and flatter exactly the models without a BOS.
    start = [] if tokenizer.bos_token_id is not None else [tokenizer.eos_token_id]
    if start == [None]:
        raise KollmError("the tokenizer defines neither a BOS nor an EOS token, so the first token of a text has "
                         "nothing to be predicted from; set bos_token or eos_token in its tokenizer_config.json")
    pairs, n_bytes = [], 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        pairs += windows([*start, *encode_with_bos(tokenizer, text)], ctx)
    pairs.sort(key=lambda p: len(p[0]))  # similar lengths per batch -> little padding
    nll = 0.0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        T = max(len(p[0]) for p in chunk)
        x = torch.zeros(len(chunk), T, dtype=torch.long)
        y = torch.full((len(chunk), T), -100, dtype=torch.long)
        for j, (inp, tgt) in enumerate(chunk):
            x[j, :len(inp)] = torch.tensor(inp)
            y[j, :len(tgt)] = torch.tensor(tgt)
        logits = logits_fn(x.to(device)).float()
        nll += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.to(device).view(-1),
                               ignore_index=-100, reduction="sum").item()
    return nll, n_bytes


def bits_per_byte(model: torch.nn.Module, tokenizer: object, texts: Sequence[str], ctx_len: int,
                  batch_size: int = 8) -> float:
    """bits-per-byte of a kollm model (or any module mapping ids -> logits) on `texts`."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        nll, n_bytes = text_nll(model, tokenizer, texts, ctx_len, batch_size, device)
    finally:
        model.train(was_training)
    return nll / (math.log(2) * max(n_bytes, 1))
