"""The attention-mask rule and the per-layer windows both forwards share (serve/kv.py)."""

from types import SimpleNamespace

import torch

from kollm.serve.kv import allowed, windows


def test_allowed_is_causal_and_keeps_the_last_window_keys() -> None:
    q, k = torch.arange(3, 8), torch.arange(8)
    for window in (0, 1, 3):
        got = allowed(q, k, window)
        for i, qp in enumerate(q.tolist()):
            for j, kp in enumerate(k.tolist()):
                want = kp <= qp and (not window or qp - kp < window)
                assert bool(got[i, j]) == want, (window, qp, kp)


def test_allowed_broadcasts_over_rows() -> None:
    pos = torch.tensor([2, 5])
    got = allowed(pos[:, None], torch.arange(6)[None], 2)  # a decode step: one query per row
    assert got.shape == (2, 1, 6)
    assert got[0, 0].tolist() == [False, True, True, False, False, False]
    assert got[1, 0].tolist() == [False, False, False, False, True, True]


def test_windows_follow_the_layer_types() -> None:
    gemma = SimpleNamespace(num_hidden_layers=3, sliding_window=512,
                            layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    assert windows(gemma) == [512, 512, 0]
    # a window in the config with no sliding layer (Qwen2 with use_sliding_window off) is not used
    qwen = SimpleNamespace(num_hidden_layers=2, sliding_window=4096, layer_types=["full_attention"] * 2)
    assert windows(qwen) == [0, 0]
    assert windows(SimpleNamespace(num_hidden_layers=2)) == [0, 0]  # no layer_types at all (older configs)


def test_prefix_store_finds_the_longest_prefix_and_evicts_cleanly():
    """Against brute force: the longest common prefix with any stored prompt (at least a whole block, the index's
    unit; not cut to whole blocks), below the last token; evicted prompts leave no trace in the index."""
    import random

    from kollm.serve.kv import PREFIX_BLOCK, PrefixStore

    rng = random.Random(0)
    kv = [(torch.zeros(1, 4), torch.zeros(1, 4))]  # 32 bytes an entry
    store = PrefixStore(32 * 20)  # room for 20 entries: older ones are evicted
    heads = [[rng.randrange(50) for _ in range(rng.randrange(1, 90))] for _ in range(6)]
    for _ in range(300):
        ids = rng.choice(heads)[: rng.randrange(1, 90)] + [rng.randrange(50) for _ in range(rng.randrange(0, 40))]
        best = 0
        for toks in store.entries:
            n = next((i for i, (a, b) in enumerate(zip(toks, ids, strict=False)) if a != b), min(len(toks), len(ids)))
            n = min(n, len(ids) - 1)
            best = max(best, n if n >= PREFIX_BLOCK else 0)
        assert store.reusable(ids) == best  # what a lookup would give, without touching the store
        hit, found = store.lookup(ids)
        assert hit == best and (found is None) == (best == 0)
        if store.wants(ids):
            store.add(ids, kv)
        assert len(store.entries) <= 20
        assert {k for keys in store.index.values() for k in keys} == set(store.entries)
