"""The output processor's cost per generated token as the output grows: kollm's (serve/output.py: each token's
bytes decoded once, masks over a window) against re-decoding the whole output with the tokenizer at every token
(what kollm's stream did before, and what a naive server does), side by side on the same token stream.

    python bench/serve_output.py --tokenizer ~/.cache/kollm/test-models/gemma-3-270m/hf [--tokens 2000]

The text is Korean review prose with phone numbers in it, so the PII masks have work to do.
"""

from __future__ import annotations

import argparse
import time

from transformers import AutoTokenizer

from kollm.data.pii import mask_for_people
from kollm.serve.output import Output
from kollm.serve.utf8 import Utf8Guard

TEXT = ("배송이 빠르고 포장도 꼼꼼해서 만족스러웠어요. 문의는 010-1234-5678 으로 주세요. "
        "색상이 사진과 조금 달라서 아쉽지만 가격 대비 품질은 훌륭합니다. ")


def redecode(tok: object, ids: list[int], mask: bool) -> float:
    """Seconds for the whole stream when every token re-decodes (and re-masks) the output so far."""
    t0, sent = time.perf_counter(), 0
    for i in range(1, len(ids) + 1):
        text = tok.decode(ids[:i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if mask:
            text = mask_for_people(text)
        sent = max(sent, len(text.rstrip("\ufffd")))
    return time.perf_counter() - t0


def incremental(pieces: list[bytes], ids: list[int], mask: bool) -> float:
    t0 = time.perf_counter()
    out = Output(pieces, (), ["\n\n"], mask)
    for t in ids:
        out.push(t)
    out.finish()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--tokens", type=int, default=2000)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    pieces = Utf8Guard(tok, len(tok)).pieces
    ids = tok.encode(TEXT * (args.tokens // 20 + 1), add_special_tokens=False)
    print(f"\noutput processing, {args.tokenizer}, per generated token (microseconds)\n")
    print("| output tokens | mask | re-decode every token | kollm (incremental) | speed-up |")
    print("|---|---|---|---|---|")
    for n in (250, 1000, args.tokens):
        for mask in (False, True):
            a = redecode(tok, ids[:n], mask) / n * 1e6
            b = incremental(pieces, ids[:n], mask) / n * 1e6
            print(f"| {n} | {'on' if mask else 'off'} | {a:,.0f} | {b:,.1f} | {a / b:,.0f}x |")


if __name__ == "__main__":
    main()
