"""Reading files a user names (configs, segments files): bounded, and of the right kind.

A config is a regular file: a FIFO would block the read for ever and /dev/zero never
ends, so both are refused before they are opened. A segments file may also be a pipe
(a shell's `<(query ...)`), read to its end. Past its limit a file is refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_text(path: str | os.PathLike[str], limit: int, pipe: bool = False) -> str:
    """The UTF-8 text of a regular file (or, with `pipe`, a FIFO) of at most `limit`
    bytes, newlines as `open` reads them; OSError (with a strerror saying why) if it is
    not such a file."""
    kinds = (stat.S_IFREG, stat.S_IFIFO) if pipe else (stat.S_IFREG,)
    kind = stat.S_IFMT(Path(path).stat().st_mode)
    if kind not in kinds:
        raise OSError(errno.EINVAL, f"not a regular file ({_KINDS.get(kind, 'special')})")
    # O_NONBLOCK: a file that became a FIFO since is opened without waiting, and refused
    fd = os.open(path, os.O_RDONLY | (0 if pipe else os.O_NONBLOCK))
    with os.fdopen(fd, "rb") as handle:
        if stat.S_IFMT(os.fstat(fd).st_mode) not in kinds:
            raise OSError(errno.EINVAL, "not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // 2**20} MiB")
    text = data.decode("utf-8")
    # as text mode reads it (universal newlines), which the callers always had
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
