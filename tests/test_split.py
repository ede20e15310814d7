"""The hash split never moves a row between versions: a Studio database's held-out items, and a tuning run's
validation rows, stay where they were when kollm is upgraded (a moved item would be trained on after being scored)."""

from kollm.split import unit_hash
from kollm.studio.training import held_out
from kollm.tune.examples import Row, split


def test_unit_hash_pinned() -> None:
    assert unit_hash("0:아이폰 케이스") == 0.9540171765274614
    assert unit_hash("7:무선 청소기") == 0.1413718208176112
    assert all(0 <= unit_hash(str(i)) < 1 for i in range(1000))


def test_studio_held_out_pinned() -> None:
    queries = ["아이폰 케이스", "무선 청소기", "가습기", "닌텐도 스위치", "제주도 항공권", "떡볶이", "냉장고",
               "운동화", "매트리스", "로션", "노트북", "에어팟", "유모차", "선풍기", "김치냉장고", "캠핑 의자",
               "텀블러", "전기밥솥", "블루투스 이어폰", "요가 매트"]
    assert [q for q in queries if not held_out({"query": q})] == [
        "떡볶이", "냉장고", "운동화", "매트리스", "선풍기", "블루투스 이어폰", "요가 매트"]


def test_tune_split_pinned() -> None:
    answers = ["가방", "신발", "모자", "우산", "장갑", "양말", "지갑", "시계"]
    rows = [Row(where=f"f:{i}", kind="completion", prompt=f"검색어: {a}{i}\n교정:", completion=a)
            for a in answers for i in range(3)]
    train, held = split(rows, 0.5, seed=0)
    held_answers = {a for a in answers if unit_hash(f"0:{a}") < 0.5}
    assert {r.key for r in held} == held_answers == {"가방", "시계", "양말", "장갑"}
    assert {r.key for r in train}.isdisjoint({r.key for r in held}) and len(train) + len(held) == len(rows)
