"""Progress bars that stay readable in a log file.

On a terminal this is tqdm. When the output is not a terminal (CI, `> log`, nohup) a redrawn bar would write
a carriage-return frame per update (megabytes over a long run), so the same bar prints one plain line every
`PLAIN_EVERY_S` seconds instead, and a last one when it closes: rate and ETA stay visible, the file stays small.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

PLAIN_EVERY_S = 15.0


class Progress(tqdm):
    monitor_interval = 0  # no monitor thread: a thread in the parent at fork time can leave a lock held

    def __init__(self, iterable: Iterable | None = None, **kw: Any) -> None:
        out = kw.get("file") or sys.stderr
        self._plain = not (hasattr(out, "isatty") and out.isatty())
        self._last_line, self._closing = -1e9, False
        if self._plain:
            kw["dynamic_ncols"], kw["ncols"] = False, 100
        super().__init__(iterable, **kw)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self._plain:
            return super().display(msg, pos)
        if msg == "":
            return False  # tqdm clearing a bar it does not leave: nothing to clear in a log (and no "\r" after)
        now = time.monotonic()
        if not self._closing and now - self._last_line < PLAIN_EVERY_S:
            return True
        self._last_line = now
        # the closing line gets its newline from tqdm.close
        self.fp.write((msg if msg is not None else str(self)).strip() + ("" if self._closing else "\n"))
        self.fp.flush()
        return True

    def close(self) -> None:
        self._closing = True
        super().close()


def progress(iterable: Iterable | None = None, **kw: Any) -> Progress:
    """`tqdm(...)` with the log-file behaviour above; takes tqdm's arguments."""
    return Progress(iterable, **kw)
