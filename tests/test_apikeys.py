"""kollm.apikeys: the one definition of API keys for `kollm serve` and the Studio."""

from __future__ import annotations

import pytest

from kollm.apikeys import bearer, hash_key, new_key, same


def test_the_hash_is_plain_sha256_hex_so_stored_keys_stay_valid():
    # fixed vectors (SHA-256 of the UTF-8): key databases made before apikeys.py hold exactly these digests
    assert hash_key("kollm-abc") == "b141b52391ea1d19e7b1e9f398df3feaa3f3ca69f4a982d89b975e3fd062d9d3"
    assert hash_key("kst-키") == "e011fce6ed5193f57ae99a756af3419647cc947ebc41536954e708b6571f9da6"


def test_new_keys_carry_their_prefix_and_32_random_bytes():
    a, b = new_key("kollm-"), new_key("kst-")
    assert a.startswith("kollm-") and len(a) == len("kollm-") + 43  # token_urlsafe(32): 43 characters
    assert b.startswith("kst-") and new_key("kst-") != b


@pytest.mark.parametrize("header, token", [
    ("Bearer kollm-x", "kollm-x"), ("bearer  kollm-x  ", "kollm-x"), ("BEARER kollm-x", "kollm-x"),
    (" Bearer kollm-x", "kollm-x"), ("Bearer ", None), ("Bearer", None), ("Basic dXNlcjpwdw==", None),
    ("Bearerkollm-x", None), ("", None), (None, None)])
def test_bearer(header, token):
    assert bearer(header) == token


def test_same_compares_any_text_without_raising():
    assert same("kst-a", "kst-a") and not same("kst-a", "kst-b")
    assert not same("é\xff", "kst-a") and same("é", "é")  # hmac.compare_digest raises on non-ASCII str
