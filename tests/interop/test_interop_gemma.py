"""Gemma-3-270M, a real pretrained model nobody here wrote: imported from GGUF, scored by `kollm eval`."""

from __future__ import annotations

import json

import pytest
from conftest import run_kollm, write_jsonl

pytestmark = pytest.mark.slow

# Plain Korean prose written for this test (news, everyday and explanatory registers).
KOREAN_PROSE = [
    "서울시는 다음 달부터 시내버스 노선 일부를 조정한다고 밝혔다. 출퇴근 시간대에 승객이 몰리는 구간에는 "
    "배차 간격을 줄이고, 이용객이 적은 심야 노선은 통합해 운영할 계획이다. 시는 시민 의견을 반영해 "
    "세부 운행 시간표를 이달 말까지 확정할 예정이다.",
    "어제 저녁에는 오랜만에 가족들과 함께 집 근처 공원을 산책했다. 바람이 선선해서 걷기에 딱 좋았고, "
    "아이들은 놀이터에서 한참 동안 뛰어놀았다. 돌아오는 길에 작은 빵집에 들러 내일 아침에 먹을 빵을 샀다.",
    "한글은 자음과 모음을 모아 한 글자를 이루는 문자다. 예를 들어 '한'은 초성 ㅎ, 중성 ㅏ, 종성 ㄴ이 "
    "모여 만들어진다. 이런 구조 덕분에 한글은 배우기 쉽고, 새로운 소리도 비교적 정확하게 적을 수 있다.",
    "기후 변화로 여름철 폭염 일수가 해마다 늘어나고 있다. 전문가들은 한낮에는 야외 활동을 줄이고 "
    "물을 자주 마시며, 노약자는 특히 건강 상태를 주의 깊게 살펴야 한다고 조언한다.",
    "요즘은 스마트폰 하나로 은행 업무부터 병원 예약까지 대부분의 일을 처리할 수 있다. 하지만 디지털 "
    "기기에 익숙하지 않은 어르신들에게는 이런 변화가 오히려 불편하게 느껴지기도 한다.",
    "도서관에서 빌린 소설을 주말 동안 다 읽었다. 주인공이 어린 시절을 보낸 바닷가 마을로 돌아가 "
    "잊고 지냈던 친구를 다시 만나는 이야기였는데, 잔잔하면서도 마음에 오래 남는 책이었다.",
]


def test_gemma_folder_is_a_plain_hf_model(gemma_dir):
    cfg = json.loads((gemma_dir / "config.json").read_text())
    assert cfg["model_type"] == "gemma3_text" and cfg["vocab_size"] == 262144
    assert "quantization_config" not in cfg
    assert (gemma_dir / "tokenizer.json").is_file() and (gemma_dir / "generation_config.json").is_file()


def test_kollm_eval_bpb_on_gemma(gemma_dir, tmp_path):
    """`kollm eval` bits-per-byte of a real Korean-capable model on Korean prose.

    Measured 0.97 on this plain prose (1.1-1.2 on harder news text). The band is a sanity check: a broken import
    (wrong tokenizer, norms, head_dim) lands at 3-8 bits per byte, a uniform guess over 262k tokens far above.
    """
    data = write_jsonl(tmp_path / "ko.jsonl", KOREAN_PROSE)
    out = tmp_path / "metrics.json"
    proc = run_kollm("eval", "--model", str(gemma_dir), "--data", str(data), "--ctx", "512", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    bpb = json.loads(out.read_text())["bits_per_byte"]
    print(f"Gemma-3-270M bits-per-byte on Korean prose: {bpb:.4f}")
    assert 0.8 <= bpb <= 1.4


def test_gemma_writes_korean(gemma_dir):
    import torch

    from kollm.model.hf import load_hf_causal_lm

    model, tok = load_hf_causal_lm(gemma_dir)
    ids = tok("대한민국의 수도는", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    print(f"Gemma greedy: 대한민국의 수도는{text!r}")
    assert sum("가" <= ch <= "힣" for ch in text) >= 2


def test_imported_tokenizer_matches_llamacpp_on_the_original_gguf(gemma_gguf, gemma_dir):
    """The imported HF tokenizer gives the ids llama.cpp gives for the published GGUF (Korean test set)."""
    pytest.importorskip("xllamacpp", reason="needs xllamacpp (pip install -e '.[test]')")
    from llamacpp_server import llama_server
    from test_interop_llamacpp import KOREAN_SET
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gemma_dir))
    with llama_server(gemma_gguf, n_ctx=512) as server:
        got = {t: server.tokenize(t) for t in KOREAN_SET}
    bad = [t for t in KOREAN_SET if got[t] != tok(t, add_special_tokens=False)["input_ids"]]
    print(f"Gemma tokenizer, llama.cpp vs imported HF: {len(KOREAN_SET) - len(bad)}/{len(KOREAN_SET)} identical")
    assert not bad
