"""Exact and near-duplicate removal on datatrove's MinHash-LSH machinery (the data pipeline's last filter).

Near duplicates: MinHash over shingles of either characters (after removing spaces and
punctuation, so 할 수 있다 and 할수있다 agree - Korean spacing varies a lot) or Kiwi morphemes.
Exact duplicates reuse the same bucket/cluster steps with a one-band "signature" that is a
120-bit hash of the normalised text: identical signatures are exactly the identical texts.
Cluster sizes are kept on the surviving document (`exact_dedup_cluster_size` for identical copies and, when the
near cluster holds more than those, `near_dedup_cluster_size`; written by steps.Dedup) so a corpus can be
re-weighted later (FineWeb-2's "rehydration").
"""

from __future__ import annotations

import hashlib
import re
import struct

import numpy as np
import xxhash
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupCluster, MinhashDedupSignature
from datatrove.utils.binaryio import read_tuples_from_file
from datatrove.utils.hashing import HashConfig

from kollm.data.quality import KiwiWords
from kollm.kiwi import kiwi

_NOT_WORD = re.compile(r"[\W_]+")
_61_BITS = (1 << 60) - 1  # datatrove's bucket step only reads hashes below 2**61 - 1

EXACT_CONFIG = MinhashConfig(n_grams=1, num_buckets=1, hashes_per_bucket=2, hash_config=HashConfig(64, "xxhash"))


def simplify(text: str) -> str:
    """Lowercased, spaces and punctuation removed: what two copies of a text still share."""
    return _NOT_WORD.sub("", text.lower())


def char_shingles(text: str, n: int) -> list[str]:
    s = simplify(text)
    return [s[i : i + n] for i in range(max(1, len(s) - n + 1))] if s else []


def morph_shingles(text: str, n: int) -> list[str]:
    forms = [t.form for t in kiwi().tokenize(text) if not t.tag.startswith(("S", "W"))]
    return [" ".join(forms[i : i + n]) for i in range(max(1, len(forms) - n + 1))] if forms else []


def shingle(text: str, unit: str, n: int) -> list[str]:
    return morph_shingles(text, n) if unit == "morph" else char_shingles(text, n)


class KoreanMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature step with Korean shingles (characters or Kiwi morphemes)."""

    name = "🎯 Korean MinHash signatures"

    def __init__(self, output_folder: DataFolderLike, config: MinhashConfig, unit: str = "char") -> None:
        super().__init__(output_folder, config, language=KiwiWords())  # datatrove's default needs spaCy
        self.unit = unit

    def get_shingles(self, text: str) -> np.ndarray:
        grams = shingle(text, self.unit, self.config.n_grams)
        hashes = (xxhash.xxh64_intdigest(g.encode()) for g in grams)
        return np.fromiter(hashes, dtype=np.uint64, count=len(grams)).reshape(-1, 1)


class ExactSignature(MinhashDedupSignature):
    """One band of two 60-bit halves of a hash of the simplified text."""

    name = "🎯 exact-duplicate hashes"

    def __init__(self, output_folder: DataFolderLike) -> None:
        super().__init__(output_folder, EXACT_CONFIG, language=KiwiWords())

    def get_shingles(self, text: str) -> np.ndarray:
        return np.array([[1]], dtype=np.uint64)  # any non-empty array; the signature ignores it

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._text = None
        return super().run(self._remember(data), rank, world_size)

    def _remember(self, data: DocumentsPipeline) -> DocumentsPipeline:
        for doc in data:
            self._text = doc.text
            yield doc

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        h = hashlib.blake2b(simplify(self._text).encode(), digest_size=16).digest()
        hi, lo = struct.unpack("<QQ", h)
        return [[hi & _61_BITS, lo & _61_BITS]]


class FirstCopyCluster(MinhashDedupCluster):
    """datatrove's cluster step, except that each cluster keeps its first document (lowest task, then
    position) instead of an arbitrary one, and always writes cluster sizes.

    The exact and near passes cluster the same documents; with the same rule for the kept copy, the
    document an exact group keeps is also the one its near cluster keeps, so no text loses every copy.
    """

    name = "🎯 clusters (first copy kept)"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def root(x: tuple[int, int]) -> tuple[int, int]:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]  # path halving keeps the chains short
                x = parent[x]
            return x

        with self.track_time():
            for name in self.input_folder.list_files(glob_pattern="*.dups"):
                with self.input_folder.open(name, "rb") as f:
                    for f1, d1, f2, d2 in read_tuples_from_file(f, "4I", lines_to_buffer=self.lines_to_buffer):
                        a, b = root((f1, d1)), root((f2, d2))
                        if a != b:
                            parent[max(a, b)] = min(a, b)
            roots = {node: root(node) for node in sorted(parent)}
            size: dict[tuple[int, int], int] = {}
            for r in roots.values():
                size[r] = size.get(r, 0) + 1
            with self.output_folder.get_output_file_manager(mode="wb") as out:
                for (task, doc), r in roots.items():
                    if (task, doc) != r:
                        out.write(f"{task:06d}.remove", struct.pack("<I", doc))
                        self.stat_update("to_remove")
                    out.write(f"{task:06d}.sizes", struct.pack("<II", doc, size[r]))
        return iter(())


def load_removals(folder: DataFolderLike, rank: int) -> tuple[set[int], dict[int, int]]:
    """Doc indices to drop for `rank`, and cluster sizes of the docs kept, from the cluster step."""
    df = get_datafolder(folder)
    remove: set[int] = set()
    sizes: dict[int, int] = {}
    if df.isfile(f"{rank:06d}.remove"):
        with df.open(f"{rank:06d}.remove", "rb") as f:
            remove = set(np.frombuffer(f.read(), dtype="<u4").tolist())
    if df.isfile(f"{rank:06d}.sizes"):
        with df.open(f"{rank:06d}.sizes", "rb") as f:
            pairs = np.frombuffer(f.read(), dtype="<u4").reshape(-1, 2)
            sizes = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))
    return remove, sizes
