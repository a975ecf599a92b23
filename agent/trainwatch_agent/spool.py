"""The on-disk spool: samples the server has not taken yet, one JSON file per sample.

Crash-safe by construction: a sample is written to a temporary file, fsynced, and
renamed into place (then the directory is fsynced), so a file with a final name is
always a whole sample; a crash leaves at worst a temporary file, removed at the next
start. File names are the sample's collected_at in microseconds since the epoch,
zero-padded, so name order is time order and the oldest sample is the first name.

The names are listed once, when the spool opens, and kept in memory after that: the
agent never lists a directory of tens of thousands of files while it samples. At most
`max_samples` files are kept; a new sample beyond that removes the oldest ones.

One agent per spool directory: an flock on `.lock` refuses a second one.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from trainwatch_agent.logs import Limiter

log = logging.getLogger(__name__)

SUFFIX = ".json"
TEMP_PREFIX = ".tmp-"


class SpoolError(OSError):
    """The spool directory cannot be used (created, written or locked)."""


def sample_key(sample: dict[str, Any]) -> str:
    """The file name for a sample: its collected_at as zero-padded epoch microseconds."""
    moment = datetime.fromisoformat(sample["collected_at"])
    micros = int(moment.timestamp()) * 1_000_000 + moment.microsecond
    return f"{micros:020d}{SUFFIX}"


class Spool:
    def __init__(self, directory: Path, max_samples: int) -> None:
        self.directory = Path(directory)
        self.max_samples = max_samples
        self.dropped = 0  # over the cap, since the spool opened
        self._names: list[str] = []
        self._lock_file: Any = None
        # The sampler may spool (when the sender is stuck) while the sender replays.
        self._mutex = threading.RLock()
        self._limiter = Limiter(60.0)
        self._unlogged_drops = 0

    # --- opening and closing ---

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_file = open(self.directory / ".lock", "a")  # noqa: SIM115 - held until close()
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise SpoolError(f"another trainwatch-agent is using the spool directory {self.directory}") from None
        names = []
        for entry in os.scandir(self.directory):
            if entry.name.startswith(TEMP_PREFIX):
                # Half-written before a crash: the sample it held was never acknowledged as spooled.
                _unlink(entry.path)
            elif entry.name.endswith(SUFFIX) and entry.name[: -len(SUFFIX)].isdigit():
                names.append(entry.name)
        self._names = sorted(names)
        self._enforce_cap(incoming=0)

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __len__(self) -> int:
        return len(self._names)

    # --- writing ---

    def put(self, sample: dict[str, Any]) -> bool:
        """Keep a sample until it can be sent; False when the disk refused it (it is lost, and logged)."""
        with self._mutex:
            return self._put(sample)

    def _put(self, sample: dict[str, Any]) -> bool:
        try:
            name = sample_key(sample)
            data = json.dumps(sample, separators=(",", ":"), allow_nan=False).encode()
        except (KeyError, TypeError, ValueError) as exc:
            log.error("cannot spool a malformed sample (%s): it is lost", exc)
            return False
        temp = self.directory / f"{TEMP_PREFIX}{name}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.directory / name)
            self._fsync_directory()
        except OSError as exc:
            _unlink(str(temp))
            log.error("cannot write to the spool %s (%s): a sample is lost", self.directory, exc)
            return False
        index = bisect.bisect_left(self._names, name)
        if index == len(self._names) or self._names[index] != name:
            self._names.insert(index, name)
        self._enforce_cap(incoming=0)
        return True

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _enforce_cap(self, incoming: int) -> None:
        excess = len(self._names) + incoming - self.max_samples
        if excess <= 0:
            return
        oldest, self._names = self._names[:excess], self._names[excess:]
        for name in oldest:
            _unlink(str(self.directory / name))
        self.dropped += excess
        self._unlogged_drops += excess
        if self._limiter.ready("full"):
            log.warning(
                "spool full (%d samples): dropped the %d oldest samples (%d since start)",
                self.max_samples,
                self._unlogged_drops,
                self.dropped,
            )
            self._unlogged_drops = 0

    # --- reading ---

    def oldest(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest spooled sample as (name, sample); unreadable files are removed on the way."""
        with self._mutex:
            return self._oldest()

    def _oldest(self) -> tuple[str, dict[str, Any]] | None:
        while self._names:
            name = self._names[0]
            sample = self._read(name)
            if sample is not None:
                return name, sample
        return None

    def oldest_batch(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to `count` of the oldest spooled samples, oldest first, as (name, sample)."""
        with self._mutex:
            batch: list[tuple[str, dict[str, Any]]] = []
            position = 0
            while len(batch) < count and position < len(self._names):
                name = self._names[position]
                sample = self._read(name)
                if sample is not None:
                    batch.append((name, sample))
                    position += 1
                # else: the name is gone from the list, and the next one took its place.
            return batch

    def _read(self, name: str) -> dict[str, Any] | None:
        """The sample in the file `name`; None (with the name forgotten) when it is gone or unreadable."""
        try:
            with open(self.directory / name, "rb") as handle:
                sample = json.loads(handle.read())
            if not isinstance(sample, dict) or "collected_at" not in sample:
                raise ValueError("not a sample")
            return sample
        except FileNotFoundError:
            self._forget([name])
        except (OSError, ValueError) as exc:
            log.error("spool file %s is unreadable (%s); removing it", name, exc)
            self.remove(name)
        return None

    def remove(self, name: str) -> None:
        self.remove_many([name])

    def remove_many(self, names: list[str]) -> None:
        with self._mutex:
            for name in names:
                _unlink(str(self.directory / name))
            self._forget(names)

    def _forget(self, names: list[str]) -> None:
        if len(names) == 1:
            index = bisect.bisect_left(self._names, names[0])
            if index < len(self._names) and self._names[index] == names[0]:
                del self._names[index]
        elif names:
            gone = set(names)
            self._names = [name for name in self._names if name not in gone]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)
