"""How ssimjax writes files that must survive a kill, a full disk, a damaged disk and a second
process using the same cache.

- Files are written whole or not at all (:func:`write_bytes_atomic`): the bytes go to a temporary
  file beside the target, which then replaces it, so a reader (or a run killed while writing) never
  sees half of one.
- A write the disk refuses (full, over quota, read-only) is a :class:`StorageError`: one line
  naming the file and the reason; the temporary file is removed and what was there stays.
- Cache entries carry the sha256 of their content (:func:`write_entry`, :func:`read_entry`): a
  truncated or altered entry is reported in one line, removed and rebuilt, never used.
- :func:`file_lock` keeps two processes from doing the same minutes of work at once (building a
  data set, computing SSIM maps or statistics for the same images): the second waits, then finds
  the work done.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("ssimjax")

ENTRY_MAGIC = b"ssimjax-entry-1\n"
_HEADER = len(ENTRY_MAGIC) + 32  # the magic line, then the payload's sha256
# errno values that mean "this disk will not take the write", not a bug.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class StorageError(RuntimeError):
    """A file that could not be written, in one line (what, where, why)."""


def disk_error(path: str | Path, e: OSError) -> StorageError:
    """The one-line :class:`StorageError` for ``e`` raised while writing ``path``."""
    why = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        with contextlib.suppress(OSError):
            why += f" ({shutil.disk_usage(Path(path).parent).free // 1024} KiB free there)"
    return StorageError(f"cannot write {path}: {why}")


def is_disk_error(e: BaseException) -> bool:
    """True for an OSError the disk raised (full, quota, read-only), or a library's error whose
    text says so (Orbax and TensorStore report a full disk as a ValueError)."""
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        return True
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; what ssimjax writes (data sets, reports, SVGs)
# gets the mode any other new file gets here. Read once, at import, before any worker thread starts.
FILE_MODE = 0o666 & ~_umask()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` whole or not at all; :class:`StorageError` when the disk refuses."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as e:
        raise disk_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise disk_error(path, e) from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_csv(path: str | Path, header: list[str], rows) -> None:
    """A CSV file (as :mod:`csv` writes one), whole or not at all."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def append_line(path: str | Path, line: str) -> None:
    """Appends one line (a reader of the file ignores a torn last line); :class:`StorageError`
    when the disk refuses."""
    try:
        with open(path, "a") as f:
            f.write(line.rstrip("\n") + "\n")
    except OSError as e:
        raise disk_error(path, e) from None


def write_entry(path: str | Path, payload: bytes) -> None:
    """A cache entry: ``payload`` behind a header holding its sha256, written atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(path, e) from None
    write_bytes_atomic(path, ENTRY_MAGIC + hashlib.sha256(payload).digest() + payload)


def read_entry(path: str | Path) -> bytes | None:
    """A cache entry's payload; None when there is none, or when it is damaged (its content no
    longer matches its checksum: truncated or altered), which is reported in one line and removed
    so that it is rebuilt."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning(f"cache entry {path} cannot be read ({e.strerror or e}); it will be rebuilt")
        return None
    payload = data[_HEADER:]
    if data[:len(ENTRY_MAGIC)] == ENTRY_MAGIC and hashlib.sha256(payload).digest() == data[len(ENTRY_MAGIC):_HEADER]:
        return payload
    why = "truncated" if len(data) < _HEADER else "its content does not match its checksum"
    log.warning(f"damaged cache entry {path} ({why}, {len(data)} bytes); removed, it will be rebuilt")
    Path(path).unlink(missing_ok=True)
    return None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | Path, what: str, log_fn=None):
    """Holds an exclusive lock on ``path`` (created if missing) for the ``with`` block; a process
    that finds it held says it is waiting (``what`` says for what) and waits. The lock goes with
    the process, however it ends."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
    except OSError as e:
        # A cache this process cannot write to (read-only, another user's) is only read: no lock needed.
        log.debug(f"no lock {path} ({e.strerror or e}); going on without it")
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (log_fn or log.info)(f"waiting for another process {what} (lock {path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
