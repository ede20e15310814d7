"""Validation during tuning: held-out bits-per-byte of the expected outputs, and the job's own metric on greedy
answers (exact match, ROUGE-L or chrF from kollm.metrics: the scores the Studio and `kollm eval` report)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from kollm import metrics
from kollm.model.loss import IGNORE
from kollm.special_tokens import encode_with_bos
from kollm.tune.examples import Example
from kollm.tune.pack import Batch

METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": metrics.exact_match, "rouge_l": metrics.rouge_l, "chrf": metrics.chrf}


def pick_metric(name: str, examples: list[Example]) -> str:
    """`auto`: exact match for short answers (query correction), ROUGE-L for longer ones (summaries), none (bits
    per byte only) for plain text."""
    refs = [e.reference for e in examples if e.prompt_ids is not None]
    if name != "auto":
        return name if refs or name == "loss" else "loss"
    if not refs:
        return "loss"
    return "exact_match" if sum(len(r) for r in refs) / len(refs) <= 40 else "rouge_l"


def head_weight(model: torch.nn.Module) -> torch.Tensor:
    return model.get_output_embeddings().weight


def hidden(model: torch.nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
    """The decoder's last hidden states (no output head: it is applied only where there is a target)."""
    # use_cache=False: transformers reads restarting positions as packed examples only when there is no cache
    out = model.get_decoder()(input_ids=batch.ids.to(device), position_ids=batch.positions.to(device),
                              use_cache=False)
    return out.last_hidden_state


def token_nats(model: torch.nn.Module, batch: Batch, device: torch.device) -> tuple[float, int]:
    """(summed cross-entropy in nats, supervised tokens) for one batch, without gradients."""
    h = hidden(model, batch, device)[:, :-1]
    t = batch.labels[:, 1:].to(device)
    keep = t != IGNORE
    if not bool(keep.any()):
        return 0.0, 0
    logits = (h[keep] @ head_weight(model).T).float()
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return float(torch.nn.functional.cross_entropy(logits, t[keep], reduction="sum")), int(keep.sum())


@torch.no_grad()
def validate(model: torch.nn.Module, tokenizer: object, val: list[Example], val_batches: list[Batch], metric: str,
             max_new_tokens: int, device: torch.device, gen_batch: int = 16) -> dict:
    """{"val_loss", "val_bpb", metric: score} over the held-out examples."""
    was_training = model.training
    model.eval()
    nats = tokens = nbytes = 0
    for b in val_batches:
        n, k = token_nats(model, b, device)
        nats, tokens, nbytes = nats + n, tokens + k, nbytes + b.target_bytes
    out = {"val_loss": nats / max(tokens, 1), "val_bpb": nats / math.log(2) / max(nbytes, 1)}
    if metric in METRICS:
        scored = [e for e in val if e.prompt_ids is not None]
        answers = generate(model, tokenizer, [e.prompt_ids for e in scored], max_new_tokens, device, gen_batch)
        # a one-line reference is compared with the answer's first line (the Studio's apps stop at "\n")
        got = [a if "\n" in e.reference else a.split("\n", 1)[0] for a, e in zip(answers, scored, strict=True)]
        out[metric] = sum(METRICS[metric](g, e.reference) for g, e in zip(got, scored, strict=True)) / len(scored)
        out["samples"] = [{"expected": e.reference, "got": g.strip()} for e, g in zip(scored[:5], got, strict=False)]
    model.train(was_training)
    return out


def generate(model: torch.nn.Module, tokenizer: object, prompts: list[list[int]], max_new_tokens: int,
             device: torch.device, batch: int = 16) -> list[str]:
    """Greedy answers, batched with left padding (prompts sorted by length so a batch pads little)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, top_p=None, top_k=None,
                             temperature=None)
        for r, i in enumerate(idx):
            answers[i] = tokenizer.decode(out[r, width:], skip_special_tokens=True)
    return answers


@torch.no_grad()
def text_logprobs(model: torch.nn.Module, tokenizer: object, texts: list[str], device: torch.device) -> list[float]:
    """Each whole text's log-probability (nats) after BOS, in one right-padded batch: which of several spellings
    of a query the model finds likelier (kollm.hangul.switch_keyboard_mode)."""
    ids = [encode_with_bos(tokenizer, t) for t in texts]
    width = max(len(x) for x in ids)
    batch = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, x in enumerate(ids):
        batch[r, :len(x)] = torch.tensor(x)
        mask[r, :len(x)] = 1
    logits = model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
    picked = torch.log_softmax(logits, -1).gather(2, batch[:, 1:, None].to(device))[..., 0]
    return (picked * mask[:, 1:].to(device)).sum(1).tolist()
