"""What a local run keeps under its --output directory: the lock that keeps two runs from sharing
it, and the ML Metadata store, checked before TFX opens it.

It imports nothing heavy, so a second run or a damaged store is refused before TFX and TensorFlow load.
"""

import contextlib
import fcntl
import os
import sqlite3
from typing import Iterator

from cnnpipe.core.errors import CnnpipeError

LOCK_FILE = ".cnnpipe.lock"
METADATA_FILE = "metadata.sqlite"


def metadata_path(output_dir: str) -> str:
    return os.path.join(output_dir, METADATA_FILE)


def check_metadata(output_dir: str) -> None:
    """Refuses a metadata store that sqlite cannot read whole, naming it and the fix."""
    path = metadata_path(output_dir)
    if not os.path.exists(path):
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            problem = "; ".join(row[0] for row in db.execute("PRAGMA quick_check")) or "empty answer"
    except sqlite3.DatabaseError as error:
        problem = str(error)
    if problem != "ok":
        raise CnnpipeError(
            f"{path}: the ML Metadata store is damaged ({problem}). It records what earlier runs did. Restore it "
            f"from a backup, or move it away (mv {path} {path}.damaged) and run again: the run then starts afresh, "
            "and the versions already pushed stay served (new ones are numbered above them)."
        )


@contextlib.contextmanager
def output_lock(output_dir: str) -> Iterator[None]:
    """Holds an exclusive lock on `output_dir`; refuses at once when another run holds it."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, LOCK_FILE), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise CnnpipeError(
                f"{output_dir}: another cnnpipe run (pid {lock.read().strip() or '?'}) is using this output "
                "directory and its metadata store; wait for it to finish, or use another --output."
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
