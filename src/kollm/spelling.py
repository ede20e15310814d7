"""Korean spelling slips a language model can judge: the well-known misspellings (되/돼, 며칠 -> 몇일), loanwords in a
non-standard spelling (케찹 -> 케첩), sound-alike vowels and finals (ㅐ/ㅔ, ㅆ/ㅅ), and a key next to the right one
or a final's key missed (추쳔, 추처 for 추천).

One place for the tables, used both ways: typo synthesis (data/typos.py) applies them to clean queries to make
training pairs, and query correction undoes them before the model sees a query (`fix_spelling`). Undoing is a
choice among candidates: the query as typed, each table's correct form where its wrong form occurs, and the
dictionary words Kiwi finds one slip away (`_kiwi_fixes`: its own typo model and kollm's, `typo_model`). A language
model's log-probability of each whole text decides, as for keyboard-mode slips (kollm/hangul.py), with a prior per
source (below), so correct queries and words no table or dictionary knows (product names) mostly stay as typed.
Kiwi's candidates must beat the text as typed by 6 nats (KIWI_PRIOR), chosen on dev items, never the held-out set
(`python bench/spelling_prior.py --judge DIR`: 106 hand-written items and 250 synthesized pairs, seed 7; the tuned
Gemma-3-270M as judge): 295 of 356 right after the pass at 6 nats, 293 at 4, 289 at 8, and at 6 no text that was
right as typed is respelled (5 at 4: 햇감자 -> 핫감자, 지갑 -> 지금, 꽈배기니트 -> 꽈배기네트).

Behind the corrector, `keep_close` keeps only the small edits of its answer: a place changed by more than two jamo
goes back as typed (a small model rewrites words it does not know). On the 106 hand-written kollm_query_correction
items, the tuned Gemma-3-270M with both passes: 0.73 -> 0.79 exact match, seven gained, none lost.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from kollm.hangul import CHO, JAMO_KEY, JONG, JUNG, KEY_JAMO, SPLIT, compose, decompose, neighbours
from kollm.kiwi import kiwi, typo_transformer
from kollm.metrics import levenshtein

# Sounds alike, so written by ear (typo synthesis makes these; Kiwi's typo model below undoes them)
VOWEL_SWAPS = {"ㅐ": "ㅔ", "ㅔ": "ㅐ", "ㅒ": "ㅖ", "ㅖ": "ㅒ", "ㅚ": "ㅙㅞ", "ㅙ": "ㅚㅞ", "ㅞ": "ㅚㅙ"}
YEO_SWAPS = {"ㅓ": "ㅕ", "ㅕ": "ㅓ"}  # only after ㅈㅉㅊ, where 저/져 sound the same
# Finals written by ear: these sound the same at the end of a syllable (neutralised), so they are confused before
# a consonant or at a word end (before ㅇ the final is heard on the next syllable: 같은 [가튼]).
BATCHIM_SWAPS = {"ㅈ": "ㅅ", "ㅊ": "ㅅ", "ㅌ": "ㅅ", "ㄷ": "ㅅ", "ㅍ": "ㅂ", "ㄲ": "ㄱ", "ㅋ": "ㄱ", "ㄺ": "ㄱ",
                 "ㄻ": "ㅁ", "ㄼ": "ㄹ", "ㄳ": "ㄱ", "ㄵ": "ㄴ", "ㅄ": "ㅂ", "ㄶ": "ㄴ", "ㅀ": "ㄹ", "ㄾ": "ㄹ"}
# ...and finals that are said as a nasal before ㄴ/ㅁ (합니다 [함니다], 국물 [궁물])
NASAL_SWAPS = {"ㅂ": "ㅁ", "ㄱ": "ㅇ", "ㄷ": "ㄴ"}

# (correct, wrong): the common misspellings, applied only where the correct form occurs. "^" = at a word start.
MISSPELLINGS: tuple[tuple[str, str], ...] = (
    ("돼요", "되요"), ("돼서", "되서"), ("됐", "됬"), ("되는", "돼는"), ("되나요", "돼나요"), ("되면", "돼면"),
    ("안 돼", "안 되"),
    # 않- (아니하-) only ever follows -지 (먹지 않는), so only there is 안 a slip for it; 안 (아니) goes before a
    # verb (소리 안 나는: offered 않 anywhere, the pass had written 소리않나는)
    ("지 않", "지 안"), ("지않", "지안"), ("^안 ", "않 "),
    ("며칠", "몇일"), ("설거지", "설겆이"), ("왠지", "웬지"), ("웬일", "왠일"), ("웬만", "왠만"), ("금세", "금새"),
    ("어떻게", "어떡해"), ("어떡해", "어떻게"), ("희한", "희안"),
    # -개 is the noun suffix for tools and dishes (베개, 덮개, 찌개), written -게 by ear
    ("베개", "배게"), ("베개", "베게"), ("찌개", "찌게"), ("지우개", "지우게"), ("덮개", "덮게"), ("병따개", "병따게"),
    ("육개장", "육계장"), ("깍두기", "깍뚜기"), ("떡볶이", "떡볶기"), ("곱빼기", "곱배기"), ("뚝배기", "뚝빼기"),
    ("오이소박이", "오이소배기"), ("주꾸미", "쭈꾸미"),
    ("할게", "할께"), ("줄게", "줄께"), ("갈게", "갈께"), ("아니에요", "아니예요"), ("결제", "결재"),
    ("역할", "역활"), ("짜깁기", "짜집기"), ("수컷", "숫컷"), ("깨끗이", "깨끗히"), ("꼼꼼히", "꼼꼼이"),
    ("일부러", "일부로"), ("오랜만", "오랫만"), ("굳이", "궂이"), ("할인율", "할인률"), ("어이없", "어의없"),
    ("봬요", "뵈요"), ("돌멩이", "돌맹이"), ("설레는", "설레이는"), ("구레나룻", "구렛나루"), ("닦달", "닥달"),
    ("뭐든지", "뭐던지"), ("어쨌든", "어쨋든"),
)

# (standard spelling per 국립국어원 외래어 표기법, common wrong spellings)
LOANWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("케첩", ("케찹",)), ("주스", ("쥬스",)), ("커피숍", ("커피샵",)), ("숍", ("샵",)), ("워크숍", ("워크샵",)),
    ("스테인리스", ("스텐", "스뎅", "스텐레스")), ("액세서리", ("악세사리", "악세서리")), ("콘텐츠", ("컨텐츠",)),
    ("소시지", ("소세지",)), ("초콜릿", ("초콜렛", "쵸콜릿")), ("로봇", ("로보트",)), ("팸플릿", ("팜플렛",)),
    ("메시지", ("메세지",)), ("바비큐", ("바베큐",)), ("카디건", ("가디건",)), ("리모컨", ("리모콘",)),
    ("텔레비전", ("텔레비젼",)), ("케이크", ("케익", "케잌")), ("재킷", ("자켓",)), ("슈퍼", ("수퍼",)),
    ("마사지", ("맛사지",)), ("렌터카", ("렌트카",)), ("컬러", ("칼라",)), ("뷔페", ("부페",)),
    ("프라이팬", ("후라이팬",)), ("보디", ("바디",)), ("배터리", ("밧데리", "바테리")), ("알코올", ("알콜",)),
    ("스펀지", ("스폰지",)), ("플라스틱", ("프라스틱",)), ("선글라스", ("썬글라스",)), ("선크림", ("썬크림",)),
    ("비스킷", ("비스켓",)), ("도넛", ("도너츠", "도나쓰")), ("캐러멜", ("카라멜",)), ("소파", ("쇼파",)),
    ("커튼", ("커텐",)), ("카펫", ("카페트",)), ("앰풀", ("앰플",)), ("테이프", ("테잎",)), ("디지털", ("디지탈",)),
    ("매니큐어", ("메니큐어",)), ("플래시", ("후레쉬", "플래쉬")), ("샌들", ("샌달",)), ("캐주얼", ("캐쥬얼",)),
    ("컬렉션", ("콜렉션",)), ("내비게이션", ("네비게이션",)), ("태블릿", ("타블렛", "테블릿")),
    ("어댑터", ("아답터", "아답타")), ("전자레인지", ("전자렌지",)), ("가스레인지", ("가스렌지",)),
    ("에어프라이어", ("에어후라이어",)), ("블렌더", ("블랜더",)), ("로열젤리", ("로얄젤리",)),
    ("마시멜로", ("마시멜로우",)), ("카스텔라", ("카스테라",)), ("라테", ("라떼",)),
    ("에스프레소", ("에스프레쏘", "익스프레소")), ("캐모마일", ("카모마일",)), ("배지", ("뱃지",)),
    ("펜던트", ("팬던트",)), ("타깃", ("타겟",)), ("콘셉트", ("컨셉",)), ("멤버십", ("멤버쉽",)),
    ("셰이크", ("쉐이크",)), ("셔벗", ("샤베트",)), ("셰프", ("쉐프",)), ("수프", ("스프",)), ("러닝", ("런닝",)),
    ("너깃", ("너겟",)), ("크루아상", ("크로와상",)), ("마요네즈", ("마요네스",)), ("파이팅", ("화이팅",)),
    ("스티로폼", ("스티로폴", "스치로폴")),
)

# Kiwi proposes dictionary words a slip is one edit away from, under two typo models, one call each: its own
# (`basic_with_continual`: vowels, 되/돼, tense initials, 연철 가방이 -> 가바이) and kollm's (`typo_model`). Joined
# into one model (`|`) they crash kiwipiepy 0.24 (a segfault on 몇일 배송); each alone analysed 4,799 synthesized,
# held-out and random texts without one.
KIWI_TYPOS = "basic_with_continual"
KIWI_TOP_N = 5
KIWI_COST = 2.0  # Kiwi's typo_cost_threshold: one slip (each of kollm's costs 1)
KIWI_PRIOR, TABLE_PRIOR = -6.0, 8.0
_KIWI_LOCK = threading.Lock()  # one analysis at a time: servers call from worker threads, and kiwipiepy 0.24 is
# fragile enough (the segfaults above) not to be trusted with concurrent typo analyses


@lru_cache(maxsize=1)
def typo_model() -> Any:
    """The slips typo synthesis makes at the level of one syllable, as a kiwipiepy TypoTransformer (orig: the
    correct form, error: as typed): vowels and finals that sound alike, a 2-beolsik key next to the right one (a
    consonant for a consonant, a vowel for a vowel), and a final's key missed (추천 -> 추처). The tables stay in
    Python (`_table_fixes`): their multi-syllable entries are what crashed Kiwi, joined with the rest."""
    pairs = [(v, w) for v, ws in {**VOWEL_SWAPS, **YEO_SWAPS}.items() for w in ws]  # ㅓ/ㅕ anywhere: Kiwi judges
    pairs += [("\\" + c, "\\" + w) for c, w in [*BATCHIM_SWAPS.items(), ("ㅆ", "ㅅ"), *NASAL_SWAPS.items()]]
    for jamo, key in JAMO_KEY.items():
        for near in (KEY_JAMO.get(k) for k in neighbours(key)):
            if near and jamo in JUNG and near in JUNG:
                pairs.append((jamo, near))
            elif near and jamo in CHO and near in CHO:
                pairs.append((jamo, near))
                if jamo in JONG and near in JONG:
                    pairs.append(("\\" + jamo, "\\" + near))
    pairs += [(compose(c, v, f), compose(c, v, SPLIT[f][0] if f in SPLIT else ""))
              for c in CHO for v in JUNG for f in JONG[1:]]
    return typo_transformer(pairs)


def _kiwi_fixes(text: str) -> list[str]:
    """Kiwi's analyses joined back into text, those that change `text` in one place only: the pass undoes one slip,
    and a joined analysis can also respell a word it reads apart (배달 음식 야식 추 천 -> 배달 음식 양식 축 천). On
    synthesized pairs the one-place rule took keyboard slips from 0.70 to 0.77 undone and touched no correct query.
    Nor may a fix touch a one-syllable word that Kiwi's spacing joins to its neighbour: that is half a word split by
    a stray space (매 트리스, Kiwi: 매트리스), which the corrector joins, not a slip to respell (미 트리스). On the
    same pairs that took queries with a space inserted from 0.93 to 0.97 and changed no other type."""
    with _KIWI_LOCK:
        k, ours = kiwi(), typo_model()
        texts = [k.join(tokens) for typos in (KIWI_TYPOS, ours)
                 for tokens, _ in k.analyze(text, top_n=KIWI_TOP_N, typos=typos, typo_cost_threshold=KIWI_COST)]
    edits = []  # (fixed text, (start, end) of the one place it changes)
    for joined in texts:
        changed = [(i1, max(i2, i1 + 1)) for op, i1, i2, _, _ in
                   difflib.SequenceMatcher(None, text, joined, autojunk=False).get_opcodes() if op != "equal"]
        if len(changed) == 1:
            edits.append((joined, changed[0]))
    if not edits:  # most correct queries: Kiwi's analyses join back to the text itself, no spacing to ask
        return []
    with _KIWI_LOCK:
        halves = _split_halves(text, k.space(text, reset_whitespace=True))
    return [joined for joined, (i1, i2) in edits if not any(a < i2 and i1 < b for a, b in halves)]


def _split_halves(text: str, spaced: str) -> list[tuple[int, int]]:
    """(start, end) in `text` of its one-syllable words that `spaced` (the same characters, spaced by Kiwi) joins
    to a neighbour."""
    if text.replace(" ", "") != spaced.replace(" ", ""):
        return []

    def gaps(t: str) -> set[int]:  # a gap after the n-th non-space character, as n
        return {len(t[:m.start()].replace(" ", "")) for m in re.finditer(r" +", t)}

    typed, kept = gaps(text), gaps(spaced)
    out = []
    for m in re.finditer(r"[^ ]+", text):
        if len(m.group()) == 1 and re.fullmatch(r"[가-힣]", m.group()):
            n = len(text[:m.start()].replace(" ", ""))
            if (n in typed and n not in kept) or (n + 1 in typed and n + 1 not in kept):
                out.append((m.start(), m.end()))
    return out


def _table_fixes(text: str) -> list[str]:
    out = []
    pairs = [(c, (w,)) for c, w in MISSPELLINGS] + list(LOANWORDS)
    for correct, wrongs in pairs:
        at_start = correct.startswith("^")
        for wrong in wrongs:
            pattern = (r"(?<!\S)" if at_start else "") + re.escape(wrong)
            out += [text[:m.start()] + correct.lstrip("^") + text[m.end():] for m in re.finditer(pattern, text)]
    return out


def spelling_candidates(text: str) -> tuple[list[str], list[float]]:
    """`text` first, then the spellings `fix_spelling` weighs against it (none differing from `text` only in
    spacing: spacing is the corrector's job), with each one's prior in nats (0 for `text`): one list a model scores
    in one batch."""
    out, priors, seen = [text], [0.0], {text.replace(" ", "")}
    kiwi_fixes = _kiwi_fixes(text) if re.search(r"[가-힣]", text) else []
    for cand, prior in [*((t, TABLE_PRIOR) for t in _table_fixes(text)), *((t, KIWI_PRIOR) for t in kiwi_fixes)]:
        if cand.replace(" ", "") not in seen:
            seen.add(cand.replace(" ", ""))
            out.append(cand)
            priors.append(prior)
    return out, priors


def pick_spelling(candidates: list[str], priors: list[float], scores: list[float]) -> str:
    """The candidate with the highest score + prior (the text as typed, `candidates[0]`, on a tie)."""
    if not len(scores) == len(priors) == len(candidates):
        raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
    total = [s + p for s, p in zip(scores, priors, strict=True)]
    best = max(range(len(total)), key=total.__getitem__)
    return candidates[best] if total[best] > total[0] else candidates[0]


def fix_spelling(text: str, logprob: Callable[[list[str]], list[float]]) -> str:
    """`text` with a spelling slip undone where the language model agrees; `logprob` scores a list of texts as in
    kollm.hangul.switch_keyboard_mode (one call, none when there is nothing to weigh)."""
    candidates, priors = spelling_candidates(text)
    return text if len(candidates) == 1 else pick_spelling(candidates, priors, logprob(candidates))


# ---- the corrector's output, kept close to its input ---------------------------------------------------------------
KEEP_CLOSE_EDITS = 2  # jamo edits one changed place of a correction may make (a slip is one or two)


def keep_close(query: str, corrected: str, max_edits: int = KEEP_CLOSE_EDITS) -> str:
    """`corrected` with every place it changes `query` by more than `max_edits` jamo put back as typed: a small
    model asked to correct a query it does not know rewrites words (무선 저소음 -> 무선 소음, 에어포스 -> air max),
    where a slip is one or two jamo (추쳔 -> 추천, 되지 -> 돼지). Places are compared syllable by syllable with
    spaces ignored (spacing is the corrector's to fix); a place is a run of changed syllables between unchanged
    ones, weighed as a whole (케잌 -> 케이크 is one place of 3 jamo). An empty correction is no correction: the
    query as typed."""
    if not corrected.strip():
        return query
    a, b = _spaced_chars(query), _spaced_chars(corrected)
    out: list[tuple[str, bool]] = []
    place: list[tuple[str, int, int, int]] = []
    typed = False  # the last place went back as typed: the next unchanged syllable keeps the query's spacing too

    def settle() -> None:
        nonlocal typed
        typed = bool(place) and sum(cost for *_, cost in place) > max_edits
        for op, i, j, _ in place:
            if not typed and op != "del":
                out.append(b[j])
            elif typed and op != "ins":
                out.append(a[i])
        place.clear()

    for op, i, j, cost in _align("".join(c for c, _ in a), "".join(c for c, _ in b)):
        if op == "sub" and cost == 0:
            settle()
            out.append(a[i] if typed else b[j])
            typed = False
        else:
            place.append((op, i, j, cost))
    settle()
    return "".join((" " if space and n else "") + c for n, (c, space) in enumerate(out))


def _spaced_chars(text: str) -> list[tuple[str, bool]]:
    """Each non-space character with whether a space comes before it."""
    out, space = [], False
    for c in text:
        if c == " ":
            space = True
        else:
            out.append((c, space))
            space = False
    return out


def _jamo(text: str) -> list[str]:
    out: list[str] = []
    for c in text:
        parts = decompose(c)
        out += [p for p in parts if p] if parts else [c]
    return out


def _align(a: str, b: str) -> list[tuple[str, int, int, int]]:
    """The cheapest syllable-by-syllable alignment of a to b: ("sub", i, j, jamo edits) (0: the same character),
    ("del", i, -1, a[i]'s jamo), ("ins", -1, j, b[j]'s jamo), in order. Other characters count as one jamo."""
    n, m = len(a), len(b)
    ja, jb = [_jamo(c) for c in a], [_jamo(c) for c in b]
    da, db = [len(x) for x in ja], [len(y) for y in jb]
    sub = [[0 if a[i] == b[j] else levenshtein(ja[i], jb[j]) for j in range(m)] for i in range(n)]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = cost[i - 1][0] + da[i - 1]
    for j in range(1, m + 1):
        cost[0][j] = cost[0][j - 1] + db[j - 1]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + da[i - 1], cost[i][j - 1] + db[j - 1],
                             cost[i - 1][j - 1] + sub[i - 1][j - 1])
    ops, i, j = [], n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + sub[i - 1][j - 1]:
            ops.append(("sub", i - 1, j - 1, sub[i - 1][j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + da[i - 1]:
            ops.append(("del", i - 1, -1, da[i - 1]))
            i -= 1
        else:
            ops.append(("ins", -1, j - 1, db[j - 1]))
            j -= 1
    return ops[::-1]
