"""`load_tokenizer`: kollm's one tokenizer loader, for its own folders and any Hugging Face one."""

from __future__ import annotations

import pytest

from kollm.errors import KollmError
from kollm.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def folders(tiny_tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.save_pretrained(out / "kollm")
    no_bos = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer, eos_token="<|eos|>")
    no_bos.save_pretrained(out / "no_bos")  # like Qwen's: names no BOS token
    return out


def test_encode_is_left_alone_by_default(folders):
    tok = load_tokenizer(folders / "kollm")
    assert tok.bos_token_id == 0 and tok("가").input_ids[0] != 0


def test_add_bos_prepends_exactly_when_defined(folders):
    """lm-eval encodes through the tokenizer: with add_bos it follows special_tokens.encode_with_bos's rule."""
    tok = load_tokenizer(folders / "kollm", add_bos=True)
    assert tok("가").input_ids == [0, *tok("가", add_special_tokens=False).input_ids]
    plain = load_tokenizer(folders / "no_bos", add_bos=True)
    assert plain.bos_token_id is None
    assert plain("가").input_ids == plain("가", add_special_tokens=False).input_ids


def test_folder_without_tokenizer_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(KollmError, match="has no tokenizer"):
        load_tokenizer(tmp_path)
