"""Tables already parsed, by file content: the speed trick of the daily read, in one place.

A campaign day runs eight stage checks, the mail, the report and the operator lists, and each of
them reads the data folder; from one day to the next most files do not change. Parsing (XLSX
through calamine, Windows-1251 CSV through the csv module) is most of a read's cost, so the parsed
table of every file is kept under ``<output>/cache/parsed/`` keyed by the SHA-256 of the file's
bytes, the dataset it was read for (its headers steer the CSV delimiter), the parser version and
the limits. A file is still read and hashed every time (a changed byte is a new key, whatever the
modification time says); only an unseen content is parsed. Normalizing, typing and the row rules
run on every read, so a change to them needs no cache flush; a change to the parsers bumps
``PARSER_VERSION``.

Entries are pickles written by this process into the product's own output folder (as trusted as
the store beside it), atomically; an entry not used for ``KEEP_DAYS`` days is removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from dataclasses import astuple
from pathlib import Path

from admission.inputs.files import Limits, RawTable

log = logging.getLogger(__name__)

PARSER_VERSION = 1
KEEP_DAYS = 7


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ParseCache:
    """``get``/``put`` parsed tables by content key; ``ParseCache(None)`` keeps nothing (plain calls, tests)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.hits = self.misses = 0

    def key(self, data: bytes, dataset: str, limits: Limits) -> str:
        return self.key_for(content_digest(data), dataset, limits)

    def key_for(self, digest: str, dataset: str, limits: Limits) -> str:
        """The key of a file whose content hash is known (the snapshot's manifest spares reading it)."""
        limits_sig = hashlib.sha256(repr(astuple(limits)).encode()).hexdigest()[:12]
        return f"{digest}-{dataset}-v{PARSER_VERSION}-{limits_sig}"

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.pkl"

    def get(self, key: str) -> RawTable | None:
        if self.folder is None:
            self.misses += 1
            return None
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                table = pickle.load(fh)
            os.utime(path)  # in use: kept by the pruning
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
            self.misses += 1
            return None
        self.hits += 1
        return table

    def put(self, key: str, table: RawTable) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(table, fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except OSError as exc:  # a full disk costs speed, never the read
            log.warning("parse cache not written: %s", type(exc).__name__)

    def prune(self, keep_days: int = KEEP_DAYS) -> int:
        """Remove entries not used for ``keep_days`` days; returns how many."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        cutoff = time.time() - keep_days * 86400
        removed = 0
        for sub in self.folder.iterdir():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    pass
        return removed
