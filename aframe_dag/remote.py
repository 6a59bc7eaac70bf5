"""A stage that runs without a shared filesystem: what HTCondor transfers, and the paths
the job sees.

The job's scratch dir mirrors the access point's tree (`preserve_relative_paths`, with
`initialdir = /`): /data/train/background arrives as data/train/background. So the
command keeps its paths, minus the leading `/`, for every path on the way to or below a
transferred one; other paths (inside the image, say) stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from aframe_dag.errors import ConfigError

URL = re.compile(r"^[a-z][a-z0-9+.-]*://")
# an absolute path inside a word: at its start, or after =, comma, [ or :
_ABSOLUTE = re.compile(r"(?<![^=,\[:\s])/[^\s,\[\];\"']+")
# where cvmfs images live: every IGWN execute point mounts them
SHARED_PREFIXES = ("/cvmfs/",)


@dataclass
class Transfer:
    inputs: list[str]  # relative to / (mirrored), or URLs
    outputs: list[str]  # relative to /
    roots: list[str]  # absolute paths whose neighbourhood is rewritten
    urls: list[str]  # inputs HTCondor's plugins fetch into the scratch dir

    def rewrite(self, text: str) -> str:
        """`text` with each path related to a transferred one made scratch-relative, and
        each URL input replaced by the file it arrives as."""
        for url in self.urls:
            text = text.replace(url, url_basename(url))
        if not self.roots:
            return text

        def relative(match: re.Match[str]) -> str:
            path = match.group(0)
            bare = path.rstrip("/") or "/"
            related = any(
                bare == root or root.startswith(bare + "/") or bare.startswith(root + "/")
                for root in self.roots
            )
            return path.lstrip("/") if related and bare != "/" else path

        return _ABSOLUTE.sub(relative, text)


def absolute_paths(text: str) -> list[str]:
    """The absolute paths in a command's word (as `Transfer.rewrite` finds them)."""
    return _ABSOLUTE.findall(text)


def plan_transfer(inputs: list[str], outputs: list[str], where: str) -> Transfer:
    """What goes with the job and comes back: local inputs and URLs; each output's dir."""
    sent: list[str] = []
    roots: list[str] = []
    for path in inputs:
        if URL.match(path):
            if path.endswith("/"):
                raise ConfigError(
                    f"{where}.inputs: {path} is a directory URL, which HTCondor cannot "
                    "transfer: list its files, or let the job read it itself "
                    "(remote.aws_credentials_file)"
                )
            sent.append(path)
            continue
        absolute = _absolute(path, f"{where}.inputs")
        if absolute.startswith(SHARED_PREFIXES):
            continue
        sent.append(absolute.lstrip("/"))
        roots.append(absolute)
    back: list[str] = []
    for path in outputs:
        if URL.match(path):
            continue  # written by the job itself, wherever it says
        directory = str(PurePosixPath(_absolute(path, f"{where}.outputs")).parent)
        if directory == "/":
            raise ConfigError(f"{where}.outputs: {path} has no directory to bring back")
        if directory not in roots:
            roots.append(directory)
            back.append(directory.lstrip("/"))
    urls = [p for p in sent if URL.match(p)]
    return Transfer(inputs=sent, outputs=back, roots=roots, urls=urls)


def url_basename(url: str) -> str:
    """Where HTCondor's plugin puts a URL input: the scratch dir, under its last name."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def _absolute(path: str, where: str) -> str:
    if not path.startswith("/"):
        raise ConfigError(f"{where}: {path!r} must be an absolute path or a URL")
    return str(PurePosixPath(path))
