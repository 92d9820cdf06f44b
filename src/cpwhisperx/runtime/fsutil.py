"""Atomic file writes: a reader never sees a half-written file, even after kill -9."""

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

# mkstemp creates 0600 files; results should get the permissions any new file gets.
_UMASK = os.umask(0)
os.umask(_UMASK)


NAME_MAX = 255  # bytes in a file name, on every file system we write to
# Room kept after an output's stem for what follows it: ".subtitled.mkv", ".mai.burned.mkv".
SUFFIX_ROOM = 16


def fit_stem(stem: str) -> str:
    """A media file's stem as output names can hold it: unchanged where it fits, else cut on a
    character boundary and given a short hash of the whole, so that two long names that share
    a beginning still differ (80 Hindi or CJK characters are 240 bytes). Bytes of a name that
    is not UTF-8 (Python holds them as lone surrogates) become "_": JSON cannot hold them."""
    stem = re.sub("[\udc80-\udcff]", "_", stem)
    limit = NAME_MAX - SUFFIX_ROOM
    if len(stem.encode()) <= limit:
        return stem
    tag = "-" + hashlib.sha256(stem.encode()).hexdigest()[:8]
    cut = stem.encode()[:limit - len(tag)].decode("utf-8", errors="ignore")
    return cut + tag


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path``; on success fsync and rename it over ``path``. The temp
    file's name is short, whatever the final one's length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cpw-", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):  # named by the file meant, not the temp file or none
            exc.filename = str(path)
        raise


def os_error(exc: OSError, path: Path | str | None = None) -> str:
    """An OSError as the one line a user can act on."""
    where = exc.filename or path or "a file"
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {where}: free some space and run again"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"cannot write {where}: {exc.strerror}; make the folder writable, or choose "
                "another with --out or CPWHISPERX_OUT")
    return f"{where}: {exc.strerror or exc}"


def write_text(path: Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    # A path that is not UTF-8 (its bytes held as lone surrogates) is kept as JSON escapes,
    # which read back as the same path.
    write_text(path, re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m[0]):04x}", text))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_sampled(path: Path, *, sample: int = 4 << 20) -> str:
    """Fingerprint a possibly huge media file by its size and its first and last bytes."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(sample))
        if size > 2 * sample:
            fh.seek(size - sample)
            digest.update(fh.read(sample))
        else:
            digest.update(fh.read())
    return digest.hexdigest()


def publish_dir(target: Path, build: Callable[[Path], None], *,
                ready: Callable[[Path], bool]) -> Path:
    """Build a folder under a temporary name beside ``target``, then rename it into place.

    A ``ready`` target is kept as it is (a concurrent build may have finished first); a broken
    one is replaced. A failed build leaves nothing behind.
    """
    if ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        if ready(target):
            return target
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
