"""Near-dedup finds planted near-duplicates and keeps distinct documents (MinHash-LSH estimate)."""

from __future__ import annotations

import numpy as np
import pytest
from datatrove.pipeline.dedup.minhash import MinhashConfig

from kollm.data.dedup import EXACT_CONFIG, KoreanMinhashSignature, simplify

BASE = [
    "서울특별시는 대한민국의 수도이자 최대 도시이다. 조선 시대부터 수도였으며 한강이 도시를 가로지른다. "
    "인구는 약 940만 명이고 25개의 자치구로 나뉜다. 경복궁과 창덕궁 같은 궁궐이 남아 있다.",
    "김치는 배추와 무를 소금에 절인 뒤 고춧가루, 마늘, 젓갈로 버무려 발효시킨 음식이다. "
    "지역과 계절에 따라 수백 가지 종류가 있으며 겨울을 앞두고 김장을 한다. 유산균이 풍부하다.",
    "대화 상자에 추가하는 컨트롤의 속성을 설정할 수 있습니다. 예를 들어 버튼의 색상, 이름 및 크기를 "
    "변경할 수 있습니다. 대부분의 속성은 디자인 모드에서만 바꿀 수 있고 일부는 실행 중에도 바꿀 수 있습니다.",
    "태양계는 태양과 그 주위를 도는 여덟 개의 행성, 왜소행성, 위성, 소행성과 혜성으로 이루어져 있다. "
    "가장 큰 행성은 목성이며 지구는 태양에서 세 번째로 가까운 행성이다. 명왕성은 왜소행성으로 분류된다.",
]


def variants(text: str) -> list[str]:
    sents = [s for s in text.split(". ") if s]
    return [
        text.replace("이다.", "이다!", 1) + " 출처: 위키백과",  # small edit + appended footer
        ". ".join(sents[1:] + sents[:1]),  # sentences reordered
        text.replace(" 수 ", "수 ").replace("최대 도시", "최대도시"),  # spacing differences
    ]


def _candidate(a: str, b: str, step: KoreanMinhashSignature) -> bool:
    sa, sb = step.get_signature(step.get_shingles(a)), step.get_signature(step.get_shingles(b))
    return any(x == y for x, y in zip(sa, sb, strict=False))  # LSH: any band equal


@pytest.mark.parametrize("unit", ["char", "morph"])
def test_near_duplicates_found_and_distinct_kept(tmp_path, unit):
    step = KoreanMinhashSignature(str(tmp_path), MinhashConfig(n_grams=5 if unit == "char" else 3), unit)
    for text in BASE:
        for v in variants(text):
            assert _candidate(text, v, step), (unit, v)
    for i, a in enumerate(BASE):
        for b in BASE[i + 1 :]:
            assert not _candidate(a, b, step)


def test_shingles_ignore_spacing_and_punctuation():
    assert simplify("할 수 있다. 할수 있다!") == "할수있다할수있다"
    assert EXACT_CONFIG.num_buckets == 1


def test_signature_is_deterministic_across_instances(tmp_path):
    a = KoreanMinhashSignature(str(tmp_path), MinhashConfig(), "char")
    b = KoreanMinhashSignature(str(tmp_path / "x"), MinhashConfig(), "char")
    assert np.array_equal(a.get_signature(a.get_shingles(BASE[0])), b.get_signature(b.get_shingles(BASE[0])))
