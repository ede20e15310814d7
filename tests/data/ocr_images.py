"""Project-made OCR test images with their ground truth, rendered deterministically with Pillow and fonts-nanum.

Kinds: receipts, product labels, paragraphs, a table, small text, rotated, blurred and JPEG-compressed pages,
Korean with Latin product names and numbers. The tests (tests/data/test_data_ocr.py) and the bench
(bench/ocr.py) both draw from here, so the measured table and the tested CER bounds are over the same images.
The truth is the text as drawn, one line per drawn line (a table row's cells joined by spaces).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
FONTS = ("NanumGothic.ttf", "NanumBarunGothic.ttf", "NanumMyeongjo.ttf", "NanumSquareR.ttf")
KINDS = ("receipt", "label", "paragraph", "table", "small", "rotated", "blurred", "jpeg")

STORES = ["행복마트 강남점", "GS25 역삼점", "이마트24 판교점", "CU 서초중앙점", "올리브영 명동점", "다이소 홍대점"]
ITEMS = [
    ("신라면 멀티팩", 4500), ("서울우유 1L", 2980), ("Coca-Cola 500ml", 2100), ("바나나맛우유", 1700),
    ("농심 새우깡", 1500), ("Samsung USB-C 케이블", 12900), ("제주 삼다수 2L", 1300), ("오리온 초코파이", 4800),
    ("빙그레 메로나", 1000), ("Nescafe 커피믹스", 15800), ("CJ 햇반 210g", 1650), ("Dove 바디워시", 9900),
]
SENTENCES = [
    "서울시는 올해 하반기부터 대중교통 요금 할인 제도를 확대한다고 밝혔다.",
    "이번 조치로 청년과 노인의 월 교통비 부담이 크게 줄어들 것으로 보인다.",
    "기상청은 내일 전국에 비가 내리고 기온이 5도가량 떨어질 것이라고 예보했다.",
    "한글은 1443년 세종대왕이 창제한 문자로 자음과 모음을 모아 쓴다.",
    "KTX를 타면 서울에서 부산까지 2시간 30분 정도 걸린다.",
    "이 제품은 배송이 빨랐고 포장도 꼼꼼해서 만족스러웠어요.",
    "도서관은 매주 월요일과 법정 공휴일에 휴관하며 평일에는 오후 9시까지 운영한다.",
    "Apple과 Samsung은 새 스마트폰을 다음 달 국내에 출시할 예정이다.",
    "회의는 오전 10시에 3층 대회의실에서 시작하니 늦지 않게 와 주세요.",
    "전기차 보조금 신청은 4월 1일부터 온라인으로만 받는다.",
    "주민센터에서 여권을 발급받으려면 신분증과 사진 한 장이 필요하다.",
    "이번 전시회에는 국내외 작가 120여 명의 작품이 소개된다.",
]
LABELS = [
    ("유기농 현미 녹차", "현미 60%, 녹차잎 40%", "500g (25티백)"),
    ("Premium 아몬드 브리즈", "아몬드 8%, 정제수, 비타민 E", "950ml"),
    ("허니버터 칩 Original", "감자 70%, 버터, 아카시아꿀", "60g"),
    ("제주 감귤 주스 100%", "감귤 과즙 100%", "1.5L"),
    ("국산 콩 두부", "대두 99%, 응고제", "300g"),
]
TABLE_HEAD = ("품목", "수량", "단가", "금액")


@dataclass(frozen=True)
class Sample:
    kind: str
    name: str
    data: bytes  # the encoded image file (PNG, or JPEG for the jpeg kind)
    truth: str  # one line per drawn line


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def _won(n: int) -> str:
    return f"{n:,}"


def _receipt_lines(rng: random.Random) -> list[str]:
    items = rng.sample(ITEMS, 4)
    counts = [rng.randint(1, 3) for _ in items]
    total = sum(p * c for (_, p), c in zip(items, counts, strict=True))
    store = rng.choice(STORES)
    brn = f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(10000, 99999)}"
    when = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(8, 22):02d}:{rng.randint(0, 59):02d}"
    lines = [store, f"사업자번호 {brn}", when]
    lines += [f"{n} {c}개 {_won(p * c)}원" for (n, p), c in zip(items, counts, strict=True)]
    lines += [f"합계 {_won(total)}원", f"카드 결제 {_won(total)}원", "감사합니다"]
    return lines


def _label_lines(rng: random.Random, i: int) -> list[str]:
    name, parts, amount = LABELS[i % len(LABELS)]
    return [f"제품명 {name}", f"원재료 {parts}", f"내용량 {amount}",
            f"유통기한 2025.{rng.randint(1, 12):02d}.{rng.randint(1, 28):02d}", "제조원 (주)한국식품 Made in Korea"]


def _paragraph_lines(rng: random.Random, n: int = 5) -> list[str]:
    return rng.sample(SENTENCES, n)


def _draw_lines(lines: list[str], font: ImageFont.FreeTypeFont, margin: int = 40, gap: float = 0.6,
                width: int | None = None) -> Image.Image:
    size = font.size
    w = width or max(int(font.getlength(t)) for t in lines) + 2 * margin
    h = 2 * margin + int(len(lines) * size * (1 + gap))
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    for k, t in enumerate(lines):
        d.text((margin, margin + int(k * size * (1 + gap))), t, font=font, fill=0)
    return img


def _table(rng: random.Random, font: ImageFont.FreeTypeFont) -> tuple[Image.Image, list[str]]:
    rows = [TABLE_HEAD] + [(n, str(c), _won(p), _won(p * c))
                           for (n, p), c in ((it, rng.randint(1, 5)) for it in rng.sample(ITEMS, 5))]
    widths = [max(int(font.getlength(r[j])) for r in rows) + 40 for j in range(4)]
    row_h, margin = int(font.size * 1.8), 30
    img = Image.new("L", (sum(widths) + 2 * margin, row_h * len(rows) + 2 * margin), 255)
    d = ImageDraw.Draw(img)
    for k, r in enumerate(rows):
        y, x = margin + k * row_h, margin
        for j, cell in enumerate(r):
            d.text((x + 20, y + (row_h - font.size) // 2), cell, font=font, fill=0)
            x += widths[j]
    for k in range(len(rows) + 1):  # ruling lines, as a printed table has them
        d.line([(margin, margin + k * row_h), (margin + sum(widths), margin + k * row_h)], fill=0, width=2)
    x = margin
    for wj in [0, *widths]:
        x += wj
        d.line([(x, margin), (x, margin + len(rows) * row_h)], fill=0, width=2)
    return img, [" ".join(r) for r in rows]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make(kind: str, i: int) -> Sample:
    """The i-th image of a kind; the same (kind, i) gives the same bytes on every run."""
    rng = random.Random(f"{kind}:{i}")
    font_name = FONTS[i % len(FONTS)]
    if kind == "receipt":
        lines = _receipt_lines(rng)
        img = _draw_lines(lines, _font(font_name, 26), gap=0.5)
    elif kind == "label":
        lines = _label_lines(rng, i)
        img = _draw_lines(lines, _font(font_name, 30))
    elif kind == "paragraph":
        lines = _paragraph_lines(rng)
        img = _draw_lines(lines, _font(font_name, 28))
    elif kind == "table":
        img, lines = _table(rng, _font(font_name, 26))
    elif kind == "small":  # 11-13 px text: below what tesseract reads well without upscaling
        lines = _paragraph_lines(rng, 4)
        img = _draw_lines(lines, _font(font_name, 11 + i % 3), margin=10)
    elif kind == "rotated":  # a page photographed or scanned 3-8 degrees off
        lines = _paragraph_lines(rng, 4)
        angle = rng.choice((-1, 1)) * rng.uniform(3, 8)
        img = _draw_lines(lines, _font(font_name, 28)).rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=255)
    elif kind == "blurred":  # out of focus on a grey, unevenly lit page
        lines = _paragraph_lines(rng, 4)
        img = _draw_lines(lines, _font(font_name, 28)).filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 1.6)))
        shade = Image.linear_gradient("L").resize(img.size).point(lambda v: 165 + v * 75 // 255)
        img = Image.composite(img, shade, img.point(lambda v: 255 - v))
    elif kind == "jpeg":  # a screenshot saved at low JPEG quality
        lines = _paragraph_lines(rng, 4)
        buf = io.BytesIO()
        _draw_lines(lines, _font(font_name, 22)).convert("RGB").save(buf, "JPEG", quality=rng.randint(12, 20))
        return Sample(kind, f"{kind}-{i}.jpg", buf.getvalue(), "\n".join(lines))
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return Sample(kind, f"{kind}-{i}.png", _png(img), "\n".join(lines))


def samples(per_kind: int = 4, kinds: tuple[str, ...] = KINDS) -> list[Sample]:
    return [make(k, i) for k in kinds for i in range(per_kind)]


def image_pdf(pages: list[bytes], dpi: int = 150) -> bytes:
    """A scan-like PDF: each page one picture, no text layer (Pillow writes no text)."""
    imgs = [Image.open(io.BytesIO(p)).convert("RGB") for p in pages]
    buf = io.BytesIO()
    imgs[0].save(buf, "PDF", save_all=True, append_images=imgs[1:], resolution=dpi)
    return buf.getvalue()


def text_pdf(pages: list[list[str]], font: str = "NanumGothic.ttf", size: float = 14.0) -> bytes:
    """A born-digital PDF: each page's lines as text objects in an embedded Korean font (pdfium writes it)."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    pdf = pdfium.PdfDocument.new()
    data = (FONT_DIR / font).read_bytes()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    handle = raw.FPDFText_LoadFont(pdf.raw, buf, len(data), raw.FPDF_FONT_TRUETYPE, True)
    for lines in pages:
        page = pdf.new_page(595, 842)
        for k, line in enumerate(lines):
            obj = raw.FPDFPageObj_CreateTextObj(pdf.raw, handle, size)
            text = ctypes.create_string_buffer((line + "\x00").encode("utf-16-le"))
            raw.FPDFText_SetText(obj, ctypes.cast(text, ctypes.POINTER(raw.FPDF_WCHAR)))
            raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 50, 780 - 1.7 * size * k)
            raw.FPDFPage_InsertObject(page.raw, obj)
        page.gen_content()
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def junk(i: int) -> bytes:
    """A page with no text on it (noise, shapes or scribbles): what the OCR confidence floor is for."""
    rng = random.Random(f"junk:{i}")
    img = Image.new("L", (600, 300), 255)
    d = ImageDraw.Draw(img)
    if i % 3 == 0:
        img = Image.frombytes("L", (600, 300), bytes(rng.randrange(256) for _ in range(600 * 300)))
    elif i % 3 == 1:
        for _ in range(30):
            x, y = rng.randint(0, 550), rng.randint(0, 250)
            d.ellipse([x, y, x + rng.randint(10, 80), y + rng.randint(10, 80)], fill=rng.randint(0, 200))
    else:
        for _ in range(40):
            d.line([(rng.randint(0, 600), rng.randint(0, 300)), (rng.randint(0, 600), rng.randint(0, 300))], fill=0,
                   width=3)
    return _png(img)
