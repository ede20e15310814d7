"""Atomic writes give files and folders the modes any new file gets: a model folder written by one user is
readable by a server or container running as another (mkstemp/mkdtemp, and safetensors' own temp file, are 0600)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Run in a fresh interpreter: kollm.files reads the umask once, at import.
WRITE = """
import json, os, stat, sys, tempfile
os.umask(int(sys.argv[2], 8))
import numpy as np
from safetensors.numpy import save_file
from kollm.files import atomic_dir, atomic_path, write_json

out = sys.argv[1]
write_json(f"{out}/run.json", {"a": 1})
with atomic_path(f"{out}/single.safetensors") as tmp:  # safetensors writes its own temp file and renames it
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp))
with atomic_dir(f"{out}/model") as tmp:
    save_file({"w": np.zeros(2, dtype=np.float32)}, f"{tmp}/model.safetensors")
    sub = tempfile.mkdtemp(dir=tmp)  # 0700
    os.close(tempfile.mkstemp(dir=sub)[0])  # 0600
modes = {}
for root, dirs, files in os.walk(out):
    for name in dirs + files:
        p = os.path.join(root, name)
        modes[os.path.relpath(p, out)] = oct(stat.S_IMODE(os.stat(p).st_mode))
print(json.dumps(modes))
"""


@pytest.mark.parametrize("umask,file_mode,dir_mode", [("022", "0o644", "0o755"), ("027", "0o640", "0o750")])
def test_atomic_writes_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    r = subprocess.run([sys.executable, "-c", WRITE, str(tmp_path), umask], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    modes = json.loads(r.stdout)
    assert len(modes) == 6 and not [p for p in modes if p.endswith(".tmp")]  # nothing left over
    dirs = {p for p in modes if p == "model" or (p.startswith("model/") and p.count("/") == 1
                                                  and not p.endswith(".safetensors"))}
    assert len(dirs) == 2
    assert {p: m for p, m in modes.items() if p in dirs} == dict.fromkeys(dirs, dir_mode)
    assert {p: m for p, m in modes.items() if p not in dirs} == dict.fromkeys(set(modes) - dirs, file_mode)
