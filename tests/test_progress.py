"""Progress in a log file: plain periodic lines, never carriage-return redraws."""

from __future__ import annotations

import io

from kollm import progress as progress_mod
from kollm.progress import progress


def test_not_a_terminal_writes_few_plain_lines(monkeypatch):
    out = io.StringIO()  # isatty() is False, as for `> log`, CI and nohup
    for _ in progress(range(20000), desc="tokenize", unit="doc", file=out):
        pass
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3  # the first line, then one per PLAIN_EVERY_S, and the last
    assert "20000/20000" in lines[-1] and "doc/s" in lines[-1]  # rate stays visible

    monkeypatch.setattr(progress_mod, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    bar = progress(total=3, desc="train", file=out)
    for _ in range(3):
        bar.update(1)
        bar.refresh()  # the training loop refreshes explicitly every step: throttled all the same
    bar.close()
    assert len(out.getvalue().splitlines()) == 5 and "\r" not in out.getvalue()
