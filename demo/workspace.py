"""What the demo writes, bounded on disk: one folder per server process, swept by age."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path


class Workspace:
    """Everything a server writes lives under ``root``, this process's files in a folder of its own; every
    file and folder under ``root`` older than ``keep_s`` seconds is deleted whenever ``sweep`` runs (at
    start, and before each request writes), what earlier processes left behind included, except the files
    ``keep`` names (the examples' cached results, which must outlive any age)."""

    def __init__(
        self,
        root: str | os.PathLike,
        keep_s: float,
        *,
        clock: Callable[[], float] = time.time,
        keep: Callable[[], set[Path]] = set,
    ) -> None:
        self.root, self.keep_s, self.clock, self.keep = Path(root), keep_s, clock, keep
        self.folder = self.root / f"run-{int(clock())}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sweep()

    def sweep(self) -> None:
        cutoff, kept = self.clock() - self.keep_s, self.keep()
        # Ages as they were before this sweep: deleting a folder's files makes the folder look new.
        entries = []
        for path in self.root.rglob("*"):
            with contextlib.suppress(OSError):  # gone meanwhile (another sweep)
                entries.append((path, path.lstat().st_mtime))
        for path, mtime in sorted(entries, key=lambda e: len(e[0].parts), reverse=True):  # deepest first
            if mtime >= cutoff or path == self.folder or path in kept:
                continue
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only once empty: a folder with young files stays
                else:
                    path.unlink(missing_ok=True)
            except OSError:
                continue  # not empty, gone meanwhile, or not ours to delete: the next sweep tries again

    def new_folder(self) -> Path:
        """A fresh folder for one request's files (swept like the rest)."""
        self.sweep()
        folder = self.folder / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder


def files_named_in(folder: Path, within: Path) -> set[Path]:
    """The files under ``within`` that the text files under ``folder`` name by their absolute path: the
    results Gradio's example cache (its CSV files) points at."""
    names: set[Path] = set()
    pattern = re.compile(re.escape(str(within)) + r"[^'\",\s]*")
    for table in folder.rglob("*.csv") if folder.is_dir() else ():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            names.update(Path(match) for match in pattern.findall(table.read_text()))
    return names
