"""Speech to text: POST /v1/audio/transcriptions of `kollm serve --whisper` against faster-whisper called directly,
same model, same settings, one run, one table.

    python bench/speech.py [--whisper DIR] [--rounds 2] [--workers 1,2]

The audio: 4 project-made clips (espeak-ng English sentences with pauses and a 5 s silence, tests/data/
speech_clips.py), about 25 s each. Rows:
  direct     faster-whisper's WhisperModel in this process (int8, VAD on, beam 5: what kollm uses), the clips
             given to `transcribe` from 1 or 4 Python threads at once
  endpoint   `kollm serve --model TINY --whisper DIR` in its own process, the same clips uploaded with the official
             openai client, 1 or 4 requests at once
Real-time factor (RTF) = wall seconds / audio seconds (lower is faster); `endpoint/direct` is the speed of the
endpoint relative to the direct call (1.0 = the same; >= 0.9 is the target). Each configuration is measured
--rounds times, alternating direct and endpoint (this shared machine's speed drifts), and the median is shown.
--workers: whisper_concurrency values to try (transcriptions at once, the cores split between them).
A second table: int8 against float32 weights, direct, one at a time: RTF and word error rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "data"))
sys.path.insert(0, str(REPO / "tests"))
import speech_clips as clips  # noqa: E402


def make_clips(folder: Path) -> list[tuple[Path, str, float]]:
    """(file, reference text, seconds) for 4 clips of about 25 s each, one with 5 s of silence in it."""
    out = []
    s = clips.SENTENCES
    for i in range(4):
        order = [s[(i + k) % len(s)] for k in range(len(s))]
        path = folder / f"clip{i}.wav"
        if i == 3:  # a pause a VAD should skip
            a, b = clips.clip(order[:3], folder / "a.wav", gap_s=0.7), clips.clip(order[3:], folder / "b.wav")
            clips.sox(a, clips.silence(folder / "gap.wav", 5.0), b, path)
        else:
            clips.clip(order, path, gap_s=0.7)
        out.append((path, " ".join(order), clips.duration(path)))
    return out


def tiny_model(folder: Path) -> Path:
    """A small kollm LM for the server to hold beside whisper (the endpoint does not use it)."""
    from conftest import korean_texts

    from kollm.model import ModelConfig
    from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
    from kollm.train import TrainConfig, train_model

    tok = save_tokenizer(train_tokenizer(korean_texts(), TokenizerConfig(vocab_size=400)), folder / "tok")
    texts = korean_texts()
    return train_model(ModelConfig(depth=2, max_seq_len=64), TrainConfig(batch_size=4, max_steps=2, eval_every_s=1e9),
                       tok, texts[:50], texts[50:], folder / "run").model_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, whisper: Path, workers: int, work: Path) -> None:
        recipe = work / f"serve-{workers}.toml"
        recipe.write_text(f"[serve]\nwhisper_concurrency = {workers}\nmax_waiting = 64\n")
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "kollm.cli", "serve", "--model", str(model), "--whisper",
                                      str(whisper), "--port", str(self.port), "--recipe", str(recipe)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        import httpx

        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"kollm serve did not start: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.3)

    def run(self, files: list[Path], language: str = "en") -> tuple[float, list[str]]:
        import openai

        async def go() -> list[str]:
            async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="x", max_retries=0,
                                          timeout=600) as c:
                return await asyncio.gather(*(c.audio.transcriptions.create(
                    file=f, model="whisper-1", language=language, response_format="text") for f in files))

        t0 = time.perf_counter()
        texts = asyncio.run(go())
        return time.perf_counter() - t0, texts

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def direct_model(whisper: Path, workers: int, compute_type: str = "int8"):
    from faster_whisper import WhisperModel

    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    return WhisperModel(str(whisper), device="cpu", compute_type=compute_type, cpu_threads=threads,
                        num_workers=workers)


def direct_run(model, files: list[Path], language: str = "en") -> tuple[float, list[str]]:
    def one(f: Path) -> str:
        segs, _ = model.transcribe(str(f), language=language, vad_filter=True)
        return " ".join(s.text.strip() for s in segs)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(files)) as pool:
        texts = list(pool.map(one, files))
    return time.perf_counter() - t0, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whisper", type=Path, default=None, help="CTranslate2 whisper folder (default: import one)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kollm-speech-bench-"))
    whisper = args.whisper
    if whisper is None:
        from kollm.interop.whisper import import_whisper

        whisper = import_whisper(work / "whisper-base")
    data = make_clips(work)
    audio = sum(d for _, _, d in data)
    model_dir = tiny_model(work)
    cores = len(os.sched_getaffinity(0))
    print(f"{len(data)} clips, {audio:.1f} s of audio; {cores} cores; whisper-base int8, VAD on, beam 5")

    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        server = Server(model_dir, whisper, workers, work)
        model = direct_model(whisper, workers)
        for clients in (1, 4):
            got: dict[str, list[float]] = {"direct": [], "endpoint": []}
            wers: dict[str, list[float]] = {"direct": [], "endpoint": []}
            for _ in range(args.rounds):
                for kind in ("direct", "endpoint"):
                    wall, texts = 0.0, []
                    if clients == 1:  # one after another
                        for f, _, _ in data:
                            w, t = direct_run(model, [f]) if kind == "direct" else server.run([f])
                            wall, texts = wall + w, texts + t
                    else:
                        wall, texts = direct_run(model, [f for f, _, _ in data]) if kind == "direct" else \
                            server.run([f for f, _, _ in data])
                    got[kind].append(wall / audio)
                    wers[kind].append(statistics.mean(clips.wer(t, ref) for t, (_, ref, _) in zip(texts, data,
                                                                                                  strict=True)))
            d, e = statistics.median(got["direct"]), statistics.median(got["endpoint"])
            rows.append((workers, clients, d, e, d / e, statistics.mean(wers["direct"]),
                         statistics.mean(wers["endpoint"])))
            print(f"  measured workers={workers} clients={clients}: direct {d:.3f} endpoint {e:.3f}", flush=True)
        server.close()
        del model

    print(f"\nReal-time factor (wall s / audio s, lower is faster), {cores} cores, median of {args.rounds} rounds")
    print("| whisper_concurrency | requests at once | direct RTF | endpoint RTF | endpoint/direct speed | WER direct "
          "| WER endpoint |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for w, c, d, e, r, wd, we in rows:
        print(f"| {w} | {c} | {d:.3f} | {e:.3f} | {r:.2f}x | {wd:.3f} | {we:.3f} |")

    print(f"\nWeights: direct, one clip at a time, {cores} threads")
    print("| compute type | RTF | WER |")
    print("|---|---:|---:|")
    for ct in ("int8", "float32"):
        model = direct_model(whisper, 1, ct)
        direct_run(model, [data[0][0]])  # warm-up
        wall, texts = 0.0, []
        for f, _, _ in data:
            w, t = direct_run(model, [f])
            wall, texts = wall + w, texts + t
        wer = statistics.mean(clips.wer(t, ref) for t, (_, ref, _) in zip(texts, data, strict=True))
        print(f"| {ct} | {wall / audio:.3f} | {wer:.3f} |")
        del model


if __name__ == "__main__":
    main()
