"""The data stage's one config: the [data] section of a recipe (`kollm data run`, `kollm data typos`,
`kollm quickstart`), CLI flags on top. The quickstart runs the same pipeline with its heavy stages switched off
(recipes/quickstart.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    inputs: list[str] = field(default_factory=list)  # files or folders (jsonl[.gz|.zst], txt, parquet, xml.bz2)
    out: str = "kollm-out/data"
    workers: int = 2  # processes on this machine
    tasks: int = 0  # units of work (and of resume); 0: one per input file, at least `workers`
    executor: str = "local"  # local | slurm | ray: the same blocks on each
    slurm_partition: str = ""
    slurm_time: str = "24:00:00"
    txt_doc_per_file: bool = False  # .txt: whole file is one document (else blank-line blocks)
    strict: bool = False  # stop at the first unreadable file or line (else count it in stats.json and go on)
    # audio (wav, mp3, m4a, flac, ogg) is transcribed with this CTranslate2 whisper folder (`kollm import whisper`);
    # without one, audio files are removed as no_whisper (strict: the run stops)
    whisper: str = ""
    whisper_language: str = ""  # ISO 639-1 code ("ko") for every audio file; empty: detected per file
    # images (png, jpg, tiff, webp) and PDF pages without a text layer are OCR'd (data/ocr.py, tesseract kor+eng);
    # pages read under this confidence (0-100) go to removed/read/ as low_ocr_confidence (strict: the run stops).
    # bench/ocr.py: the 40 text pages (8 kinds) read at 80-94, pages of noise, shapes or scribbles at 15-67
    ocr_min_confidence: float = 70.0
    # stages; each can be switched off
    normalize: bool = True
    html_to_text: bool = True
    repair_lines: str = "rules"  # rules | kiwi | off (see docs/data.md for the measurement)
    quality: bool = True
    min_chars: int = 200
    max_chars: int = 1_000_000
    min_hangul_share: float = 0.3
    spam_min_hits: int = 3
    fineweb2_filters: bool = True  # Gopher/FineWeb rules with FineWeb-2 kor_Hang thresholds
    mask_pii: bool = True
    exact_dedup: bool = True
    near_dedup: bool = True
    shingle: str = "char"  # char | morph
    shingle_size: int = 5
    minhash_buckets: int = 14
    minhash_hashes_per_bucket: int = 8
    output_format: str = "jsonl"  # jsonl | parquet
    tokenizer: str = ""  # folder with tokenizer.json: also write packed token shards
    keep_removed: bool = True  # removed documents kept (with reasons) for `kollm data inspect`
    # `kollm data typos`: (typo -> correct) pairs for query correction (data/typos.py). typo_rates: the probability
    # that a pair gets each error type where it can apply (types not listed are not made). A pair has 1-2 errors:
    # where the rates of the types that apply sum below 1 (or above 2) they are scaled up (down) to that.
    typo_rates: dict[str, float] = field(default_factory=lambda: {
        "keyboard": 0.25, "jamo_drop_double": 0.15, "english_mode": 0.15, "korean_mode": 0.15, "vowel": 0.2,
        "batchim": 0.2, "misspelling": 0.3, "spacing_drop": 0.25, "spacing_insert": 0.15, "loanword": 0.3})
    typo_unchanged: float = 0.2  # share of pairs left correct on both sides
    typo_pairs_per_query: int = 3
    typo_seed: int = 0
