"""Vocabulary expansion: add Korean tokens to an existing BPE tokenizer and resize a model to match.

English-first models (Llama, Gemma, Mistral, Qwen) split Hangul into many byte or single-syllable
tokens. Korean adaptations (e.g. Llama-2-Ko, EEVE) add Korean tokens learned from Korean text and
grow the embedding matrix, initialising each new row from the mean of the old sub-token rows.

How the tokens are learned ("continued BPE"): the corpus is segmented by the *base* tokenizer
(normaliser, pre-tokenizer, model), then BPE merge learning continues on top of those segments.
The new merges are appended after the base merges, so every base merge still fires first and the
learned merges apply exactly as they did during learning. Characters the base vocabulary lacks
(they fell back to bytes or <unk>) are added as new single-character tokens first. Old token ids
never change, so the old embedding rows stay valid.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, models, trainers

from kollm.errors import KollmError
from kollm.files import atomic_dir
from kollm.progress import progress

_BYTE_TOKEN_LEN = len("<0x00>")
_SYMBOL_BASE = 0x10000  # symbols are renamed to astral code points (no surrogates) for the BPE trainer


@dataclass
class Extension:
    tokenizer: Tokenizer
    added: list[str]  # new tokens, in the base tokenizer's internal spelling (e.g. '▁학교', 'ĠíķĻ')
    base_vocab_size: int
    first_new_id: int


def _is_fallback(value: str, unk: str | None) -> bool:
    return value == unk or (len(value) == _BYTE_TOKEN_LEN and value.startswith("<0x") and value.endswith(">"))


def _symbols(base: Tokenizer, word: str, unk: str | None) -> list[str]:
    """The base segmentation of one pre-tokenized word; byte-fallback/unk runs become their characters."""
    raw = word.encode("utf-8")
    out: list[str] = []
    pending: tuple[int, int] | None = None  # byte span of consecutive fallback tokens
    for t in base.model.tokenize(word):
        start, end = t.offsets  # byte offsets into the word
        if _is_fallback(t.value, unk):
            pending = (pending[0], end) if pending else (start, end)
            continue
        if pending:
            out += list(raw[pending[0]:pending[1]].decode("utf-8", errors="replace"))
            pending = None
        out.append(t.value)
    if pending:
        out += list(raw[pending[0]:pending[1]].decode("utf-8", errors="replace"))
    return out


def _words(base: Tokenizer, texts: Iterable[str]) -> Counter[tuple[str, ...]]:
    counts: Counter[str] = Counter()
    for text in progress(texts, desc="pre-tokenize", unit="doc"):
        norm = base.normalizer.normalize_str(text) if base.normalizer else text
        pieces = base.pre_tokenizer.pre_tokenize_str(norm) if base.pre_tokenizer else [(norm, (0, 0))]
        counts.update(p for p, _ in pieces)
    unk = json.loads(base.to_str())["model"].get("unk_token")
    return Counter({tuple(_symbols(base, w, unk)): c for w, c in counts.items() if w})


def learn_extension(base: Tokenizer, texts: Iterable[str], n_new: int, min_frequency: int = 2) -> Extension:
    """Return `base` with up to `n_new` tokens learned from `texts` appended (ids after every old id)."""
    spec = json.loads(base.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise KollmError(f"extend supports BPE tokenizers (Llama, Gemma, GPT-2 style); this one is {model.get('type')}")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise KollmError("extend does not support BPE with subword prefixes/suffixes (WordPiece-style)")
    if n_new < 1:
        raise KollmError(f"number of new tokens must be >= 1, got {n_new}")
    vocab: dict[str, int] = model["vocab"]
    words = _words(base, texts)
    if not words:
        raise KollmError("extension corpus is empty; give files with text")

    # Rename each symbol to one code point so the fast Rust BPE trainer can learn merges over them.
    names: dict[str, str] = {}
    for w in words:
        for s in w:
            names.setdefault(s, chr(_SYMBOL_BASE + len(names)))
    spelled = {v: k for k, v in names.items()}
    char_counts: Counter[str] = Counter()
    for w, c in words.items():
        for s in w:
            char_counts[s] += c
    new_chars = [s for s, c in char_counts.most_common() if s not in vocab and c >= min_frequency][:n_new]

    trainer = trainers.BpeTrainer(
        vocab_size=len(names) + 2 * n_new,  # slack: some merges rebuild tokens the base already has
        min_frequency=min_frequency, show_progress=False, initial_alphabet=[],
    )
    learner = Tokenizer(models.BPE())
    renamed = ["".join(names[s] for s in w) for w, c in words.items() for _ in range(c)]
    learner.train_from_iterator(renamed, trainer, length=len(renamed))
    learned = json.loads(learner.to_str())["model"]["merges"]

    added = list(new_chars)
    have = set(vocab) | set(added)
    merges = []
    for pair in learned:
        a, b = pair if isinstance(pair, list) else pair.split(" ")
        a, b = "".join(spelled[ch] for ch in a), "".join(spelled[ch] for ch in b)
        if a not in have or b not in have:
            continue  # uses a character that did not make the cut
        if a + b not in have:
            if len(added) >= n_new:
                break
            added.append(a + b)
            have.add(a + b)
        merges.append([a, b])

    ids = [*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))]
    first = max(ids) + 1
    for i, tok in enumerate(added):
        vocab[tok] = first + i
    if model["merges"] and isinstance(model["merges"][0], str):
        model["merges"] += [f"{a} {b}" for a, b in merges]  # legacy "a b" spelling
    else:
        model["merges"] += merges
    return Extension(Tokenizer.from_str(json.dumps(spec, ensure_ascii=False)), added, len(ids), first)


def resize_model(model: object, base: Tokenizer, ext: Extension) -> None:
    """Grow the input (and untied output) embeddings; each new row = mean of its base sub-token rows."""
    import torch

    old_rows = model.get_input_embeddings().weight.shape[0]
    need = ext.first_new_id + len(ext.added)
    model.resize_token_embeddings(max(old_rows, need), mean_resizing=False)
    tables = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
        tables.append(out.weight)
    with torch.no_grad():
        for i, tok in enumerate(ext.added):
            sub = [t.id for t in base.model.tokenize(tok)]
            for w in tables:
                w[ext.first_new_id + i] = w[sub].mean(0)


def extend(base_dir: Path, texts: Iterable[str], n_new: int, out_dir: Path, model_dir: Path | None = None,
           min_frequency: int = 2) -> Extension:
    """Write an extended tokenizer (and, with `model_dir`, the resized model) to `out_dir`."""
    from transformers import AutoModelForCausalLM

    path = Path(base_dir) / "tokenizer.json"
    if not path.is_file():
        raise KollmError(f"{base_dir} has no tokenizer.json; pass a Hugging Face tokenizer folder as --base")
    try:
        base = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
        raise KollmError(f"{path} is not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
    ext = learn_extension(base, texts, n_new, min_frequency)
    model = None
    if model_dir is not None:
        if not (Path(model_dir) / "config.json").is_file():
            raise KollmError(f"{model_dir} has no config.json; pass a Hugging Face model folder as --model")
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="float32")
        resize_model(model, base, ext)
    with atomic_dir(out_dir) as tmp:
        # Keep the base's tokenizer_config.json / special-token files; only the vocabulary changes.
        for f in Path(base_dir).iterdir():
            if f.is_file() and (f.name.startswith(("tokenizer", "special_tokens")) or f.suffix == ".jinja"):
                (tmp / f.name).write_bytes(f.read_bytes())
        ext.tokenizer.save(str(tmp / "tokenizer.json"))
        if model is not None:
            model.save_pretrained(tmp)
    return ext
