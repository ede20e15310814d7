"""Tuning examples: each row shape, bad rows as file:line errors, the loss only on outputs (token by token), chats
rendered as `kollm serve` renders them, packing that changes nothing but speed."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

from kollm.errors import KollmError
from kollm.model.loss import IGNORE
from kollm.special_tokens import encode_with_bos
from kollm.tokenizer.train import load_tokenizer
from kollm.tune.examples import encode, parse_row, read_rows, split
from kollm.tune.pack import batches, collate, pack_rows


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_completion_loss_covers_the_completion_and_eos_only(tok):
    row = parse_row({"prompt": "검색어: 유모챠 추천\n교정:", "completion": " 유모차 추천"}, "f:1")
    (ex,) = encode(row, tok, 512)
    prompt = encode_with_bos(tok, "검색어: 유모챠 추천\n교정:")
    completion = tok.encode(" 유모차 추천", add_special_tokens=False)
    assert ex.ids == prompt + completion + [tok.eos_token_id]
    assert ex.labels == [IGNORE] * len(prompt) + completion + [tok.eos_token_id]
    assert ex.prompt_ids == prompt and ex.reference == "유모차 추천"


def test_template_rows_join_the_output_as_the_studio_does(tok):
    studio = parse_row({"inputs": {"query": "유모챠"}, "expected": "유모차"}, "f:1", "검색어: {{query}}\n교정:")
    flat = parse_row({"typo": "유모챠", "correct": "유모차"}, "f:2", "검색어: {{typo}}\n교정:", "correct")
    for row in (studio, flat):
        assert (row.prompt, row.completion) == ("검색어: 유모챠\n교정:", " 유모차")
    nl = parse_row({"inputs": {"q": "x"}, "expected": "y"}, "f:3", "Q: {{q}}\nA:\n")
    assert nl.completion == "y"  # a template ending in whitespace gets no extra space


def test_chat_renders_like_serve_and_learns_only_assistant_turns(tok):
    from kollm.serve.base import EngineBase

    msgs = [{"role": "system", "content": "검색어를 교정하세요."}, {"role": "user", "content": "유모챠"},
            {"role": "assistant", "content": "유모차"}, {"role": "user", "content": "추쳔"},
            {"role": "assistant", "content": "추천"}]
    (ex,) = encode(parse_row({"messages": msgs}, "f:1"), tok, 512)
    served = EngineBase.chat_prompt(types.SimpleNamespace(tokenizer=tok), msgs[:-1])
    assert ex.prompt_ids == served  # the last turn's prompt is exactly what the server sends the model
    assert ex.ids[: len(served)] == served
    learned = [t for t, lab in zip(ex.ids, ex.labels, strict=True) if lab != IGNORE]
    text = tok.decode(learned)
    assert text == "유모차<|im_end|>\n추천<|im_end|>\n", text  # both answers with their turn ends, nothing else
    assert all(lab in (IGNORE, t) for t, lab in zip(ex.ids, ex.labels, strict=True))


def test_text_rows_learn_everything_and_long_ones_are_cut(tok):
    text = "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다. " * 20
    exs = encode(parse_row({"text": text}, "f:1"), tok, 64)
    assert len(exs) > 1 and all(len(e.ids) <= 64 for e in exs)
    ids = encode_with_bos(tok, text) + [tok.eos_token_id]
    learned = [t for e in exs for t, lab in zip(e.ids, e.labels, strict=True) if lab != IGNORE]
    assert learned == ids[1:]  # every token after BOS is a target exactly once


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not JSON"),
    ('["a"]', "a JSON list, not an object"),
    ('{"prompt": "a"}', '"completion" must be a string'),
    ('{"prompt": "a", "completion": 3}', '"completion" must be a string'),
    ('{"messages": [{"role": "user", "content": "a"}]}', "no assistant message"),
    ('{"messages": [{"role": "robot", "content": "a"}]}', "role"),
    ('{"inputs": {"q": "a"}, "expected": "b"}', "prompt template"),
    ('{"title": "a"}', "unknown row (keys: title)"),
    ('{"prompt": "a", "completion": "  "}', "empty completion"),
])
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path, line, problem):
    path = write(tmp_path / "d.jsonl", [{"prompt": "a", "completion": " b"}, line])
    with pytest.raises(KollmError) as e:
        list(read_rows([path]))
    msg = str(e.value)
    assert msg.startswith(f"{path}:2: ") and problem in msg and "\n" not in msg


def test_missing_template_variable_and_file_are_errors(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"inputs": {"other": "x"}, "expected": "y"}])
    with pytest.raises(KollmError, match=r"d.jsonl:1: missing input 'query'"):
        list(read_rows([path], "검색어: {{query}}"))
    with pytest.raises(KollmError, match="does not exist"):
        list(read_rows([tmp_path / "nope.jsonl"]))
    (tmp_path / "cp949.jsonl").write_bytes('{"text": "한국어"}'.encode("cp949"))
    with pytest.raises(KollmError, match="not UTF-8"):
        list(read_rows([tmp_path / "cp949.jsonl"]))


def test_held_out_split_keeps_every_answer_on_one_side():
    rows = [parse_row({"prompt": f"q{i} {j}", "completion": f" a{i}"}, "f") for i in range(200) for j in range(3)]
    train, held = split(rows, 0.1)
    assert 20 < len(held) < 120 and len(train) + len(held) == len(rows)
    assert not {r.key for r in train} & {r.key for r in held}
    assert split(rows, 0.1) == (train, held)  # stable
    answers = len({r.key for r in held})
    assert len({r.key for r in held[:answers]}) == answers  # any first n rows: as many answers as they can be
    # not each answer's first row in the file (a typo set's is its unchanged pair, q{i} 0 here)
    assert 0.1 < sum(r.prompt.endswith(" 0") for r in held[:answers]) / answers < 0.6
    assert sorted(map(id, held)) == sorted(id(r) for r in rows if r.key in {h.key for h in held})


def test_packing_changes_nothing_but_the_layout(tiny_model_dir, tok):
    from transformers import AutoModelForCausalLM

    from kollm.tune.loop import step_loss

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    rows = [parse_row({"prompt": f"검색어: {q}\n교정:", "completion": f" {a}"}, "f")
            for q, a in [("유모챠", "유모차"), ("로봇청소기 추쳔", "로봇청소기 추천"), ("오렌지 쥬스", "오렌지 주스"),
                         ("무선이어 폰", "무선 이어폰"), ("희안한 선물", "희한한 선물")]]
    exs = [e for r in rows for e in encode(r, tok, 128)]
    packed = pack_rows(exs, 128)
    assert len(packed) < len(exs)  # several examples share a row
    with torch.no_grad():
        together = step_loss(model, collate(packed, 0), torch.device("cpu"))
        # one padded row per example: the same targets, so the same mean loss
        apart = [step_loss(model, collate([[e]], 0), torch.device("cpu")) * e.supervised for e in exs]
    assert float(together) == pytest.approx(float(sum(apart)) / sum(e.supervised for e in exs), rel=1e-5)
    steps = batches(exs * 10, 128, 256, 0, seed=3, epoch=0)
    assert sum(b.tokens for b in steps) == sum(len(e.ids) for e in exs) * 10
    assert all(b.ids.shape[0] <= 2 for b in steps)
    again = batches(exs * 10, 128, 256, 0, seed=3, epoch=0)
    assert all(torch.equal(a.ids, b.ids) for a, b in zip(steps, again, strict=True))
