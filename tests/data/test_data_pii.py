"""PII masking: a generated test set of Korean personal data in the formats people write it in.

Each positive case is one sentence with one piece of PII and the placeholder it must become;
each negative case is a sentence with look-alike numbers (dates, prices, order/tracking numbers,
versions) that must come out unchanged.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta

from kollm.data.pii import brn_valid, find_pii, mask_pii
from kollm.special_tokens import PII_PLACEHOLDERS

RRN, PHONE, EMAIL, CARD, BRN, ACCOUNT = PII_PLACEHOLDERS
FW = str.maketrans("0123456789-", "０１２３４５６７８９－")
rng = random.Random(20240601)


def _digits(n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _rrn(check: bool) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 70))
    g = rng.choice("12" if born.year < 2000 else "34")
    body = born.strftime("%y%m%d") + g + _digits(5)
    if check:
        s = sum(int(d) * w for d, w in zip(body, (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5), strict=False))
        return body + str((11 - s % 11) % 10)
    return body + _digits(1)  # issued after 2020-10: no check digit


def _luhn_complete(prefix: str, length: int) -> str:
    body = prefix + _digits(length - len(prefix) - 1)
    for last in "0123456789":
        cand = body + last
        total = 0
        for i, ch in enumerate(reversed(cand)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return cand
    raise AssertionError


def _brn() -> str:
    while True:
        d = _digits(10)
        if brn_valid(d):
            return d


def positives() -> list[tuple[str, str, str]]:
    """(sentence with PII, the PII string, placeholder)."""
    cases: list[tuple[str, str, str]] = []
    for i in range(40):  # resident registration numbers
        r = _rrn(check=i % 2 == 0)
        forms = [f"{r[:6]}-{r[6:]}", f"{r[:6]} - {r[6:]}", f"{r[:6]} {r[6:]}" if i % 2 == 0 else f"{r[:6]}-{r[6:]}"]
        pii = forms[i % 3]
        if i % 5 == 0:
            pii = pii.translate(FW)
        if i % 8 == 1:
            pii = f"{r[:6]}-{r[6]}******"
        cases.append((f"주민등록번호: {pii} 로 본인 확인", pii, RRN))
    for _ in range(10):  # bare 13 digits: with a check digit, or after a keyword
        r = _rrn(check=True)
        cases.append((f"신청서에 {r} 기재", r, RRN))
        r2 = _rrn(check=False)
        cases.append((f"주민번호 {r2} 입니다", r2, RRN))
    mobiles = ["010", "011", "016", "017", "019"]
    areas = ["02", "031", "032", "051", "053", "042", "062", "064", "070", "0505"]
    for i in range(60):
        pre = mobiles[i % 5] if i % 2 == 0 else areas[i % 10]
        mid, end = _digits(4 if pre.startswith("01") or i % 3 else 3), _digits(4)
        style = i % 6
        if style == 0:
            pii = f"{pre}-{mid}-{end}"
        elif style == 1:
            pii = f"{pre}{mid}{end}"
        elif style == 2:
            pii = f"{pre} {mid} {end}"
        elif style == 3:
            pii = f"{pre}.{mid}.{end}"
        elif style == 4:
            pii = f"({pre}) {mid}-{end}"
        else:
            pii = f"{pre}-{mid}-{end}".translate(FW)
        cases.append((f"문의는 {pii}로 연락 주세요.", pii, PHONE))
    for i in range(20):
        mid, end = _digits(4), _digits(4)
        pii = [f"+82 10-{mid}-{end}", f"+82-10-{mid}-{end}", f"+8210{mid}{end}", f"+82 (0)10 {mid} {end}",
               f"+82-2-{mid[:3]}-{end}"][i % 5]
        cases.append((f"해외에서는 {pii} 번으로", pii, PHONE))
    for _ in range(6):
        pii = f"1{rng.choice('568')}{rng.choice('4689')}{_digits(1)}-{_digits(4)}"
        cases.append((f"고객센터 {pii} (평일 9시~18시)", pii, PHONE))
    users = ["hong.gildong", "kim_01", "lee+news", "park.js", "choi2024", "jung-ah"]
    hosts = ["naver.com", "gmail.com", "daum.net", "kakao.com", "korea.ac.kr", "company.co.kr"]
    for i in range(30):
        pii = f"{users[i % 6]}{i}@{hosts[i % 6 - 1]}"
        cases.append((f"메일({pii})로 보내 주세요" if i % 2 else f"이메일은{pii}입니다", pii, EMAIL))
    for i in range(30):
        prefix, length = [("4", 16), ("5", 16), ("9", 16), ("37", 15), ("6", 16)][i % 5]
        c = _luhn_complete(prefix, length)
        if length == 15:
            pii = f"{c[:4]}-{c[4:10]}-{c[10:]}"
        else:
            pii = [f"{c[:4]}-{c[4:8]}-{c[8:12]}-{c[12:]}", f"{c[:4]} {c[4:8]} {c[8:12]} {c[12:]}", c][i % 3]
        if i % 7 == 0:
            pii = pii.translate(FW)
        cases.append((f"카드번호 {pii} 결제 완료", pii, CARD))
    for i in range(25):
        b = _brn()
        pii = [f"{b[:3]}-{b[3:5]}-{b[5:]}", f"{b[:3]} {b[3:5]} {b[5:]}", b][i % 3]
        ctx = "사업자등록번호" if i % 3 == 2 else "등록:"
        cases.append((f"{ctx} {pii} (주)한빛상사", pii, BRN))
    layouts = [(6, 2, 6), (3, 3, 6), (4, 3, 6), (3, 6, 5), (3, 4, 4, 2), (4, 2, 7), (3, 6, 2, 3)]
    for i in range(35):
        lay = layouts[i % len(layouts)]
        pii = "-".join(_digits(n) for n in lay)
        ctx = ["입금 계좌", "국민은행", "예금주 홍길동", "환불 받을 곳", "신한"][i % 5]
        cases.append((f"{ctx} {pii} 으로 보내주세요", pii, ACCOUNT))
    for _ in range(10):  # any layout after a banking word
        pii = f"{_digits(4)}-{_digits(4)}-{_digits(4)}"
        cases.append((f"카카오뱅크 계좌 {pii}", pii, ACCOUNT))
    return cases


def negatives() -> list[str]:
    out = []
    for i in range(40):
        d = date(1990, 1, 1) + timedelta(days=rng.randrange(0, 365 * 35))
        out.append(
            [f"{d:%Y-%m-%d} 에 출시", f"{d:%Y.%m.%d}. 공지", f"{d:%Y%m%d} 기준", f"{d:%y/%m/%d} 배송",
             f"{d:%Y년 %m월 %d일}"][i % 5]
        )
    for i in range(40):
        won = rng.randrange(1000, 99_000_000)
        out.append([f"가격은 {won:,}원입니다", f"₩{won:,} 할인", f"총 {won}원", f"{won / 1000:.1f}만 원"][i % 4])
    for i in range(40):
        out.append(
            [f"주문번호 {_digits(8)}-{_digits(7)} 확인", f"주문번호: ORD-{_digits(4)}-{_digits(6)}",
             f"운송장 {_digits(4)}-{_digits(4)}-{_digits(4)} 배송 중", f"송장번호 {_digits(12)} 조회",
             f"예약번호 {_digits(3)}{rng.choice('ABCDEF')}{_digits(5)}"][i % 5]
        )
    for i in range(40):
        out.append(
            [f"버전 {rng.randrange(1, 20)}.{rng.randrange(0, 20)}.{rng.randrange(0, 200)} 출시",
             f"Windows 10.0.{_digits(5)}.{_digits(4)}", f"v{rng.randrange(1, 9)}.{_digits(2)}",
             f"ISBN 978-89-{_digits(4)}-{_digits(3)}-{_digits(1)}",
             f"IP 192.168.{rng.randrange(256)}.{rng.randrange(256)}"][i % 5]
        )
    for i in range(45):
        y = rng.randrange(1400, 1990)
        out.append(
            [f"{y}-{y + rng.randrange(1, 80)}년 사이", f"임진왜란({y}-{y + 6})", f"우편번호 {_digits(5)}",
             f"오후 {rng.randrange(1, 12)}:{_digits(2)}:{_digits(2)}", f"모델명 SM-G{_digits(3)}N",
             f"원주율 3.{_digits(12)}", f"제{rng.randrange(1, 999)}조 제{rng.randrange(1, 9)}항",
             f"인구 {rng.randrange(1, 999):,},{_digits(3)},{_digits(3)}명",
             f"좌표 37.{_digits(6)}, 126.{_digits(6)}"][i % 9]
        )
    return out


def test_pii_recall_and_precision():
    pos, neg = positives(), negatives()
    assert len(pos) >= 200 and len(neg) >= 200
    hits, wrong, missed = 0, 0, []
    for sentence, pii, ph in pos:
        expected = sentence.replace(pii, ph)
        got = mask_pii(sentence)
        if got == expected:
            hits += 1
        else:
            missed.append((sentence, got))
        wrong += len(find_pii(sentence)) - (got == expected)
    false_pos = [(s, mask_pii(s)) for s in neg if find_pii(s)]
    wrong += sum(len(find_pii(s)) for s in neg)
    recall = hits / len(pos)
    precision = hits / (hits + wrong)
    print(f"PII recall {recall:.4f} precision {precision:.4f} on {len(pos)} positives / {len(neg)} negatives")
    assert recall >= 0.99, missed[:10]
    assert precision >= 0.95, false_pos[:10]


def test_rrn_date_must_be_valid_and_placeholders_counted():
    counts: Counter = Counter()
    assert mask_pii("번호 901332-1234567 입니다", counts) == "번호 901332-1234567 입니다"  # month 13
    assert mask_pii("번호 900230-1234567 입니다") == "번호 900230-1234567 입니다"  # 30 February
    out = mask_pii("홍길동 900101-1234567, 010-1234-5678, hong@naver.com", counts)
    assert out == "홍길동 <|rrn|>, <|phone|>, <|email|>"
    assert counts == Counter({"<|rrn|>": 1, "<|phone|>": 1, "<|email|>": 1})


def test_checksums_decide_bare_numbers():
    assert mask_pii("카드 4111111111111111 결제") == "카드 <|card|> 결제"
    assert mask_pii("카드 4111111111111112 결제") == "카드 4111111111111112 결제"  # fails Luhn
    assert brn_valid("1248100998") and not brn_valid("1248100999")
    assert mask_pii("사업자번호 124-81-00998") == "사업자번호 <|brn|>"
    assert mask_pii("코드 124-81-00999") == "코드 124-81-00999"


def test_mask_cli_reads_stdin():
    text = "연락처 010-9876-5432 / 이메일 kim@daum.net\n두 번째 줄\n"
    res = subprocess.run(
        [sys.executable, "-m", "kollm.cli", "data", "mask"], input=text, capture_output=True, text=True, check=True
    )
    assert res.stdout == "연락처 <|phone|> / 이메일 <|email|>\n두 번째 줄\n"
