"""Start a program, resuming from its checkpoint if this build's job already wrote one.

    resume.py --checkpoint=PATH --since=FILE [--resume=WORD ...] -- COMMAND...

A job evicted from its slot (or killed with run-local) starts again from the top; the
program wrote PATH as it went. If PATH is newer than FILE (the stage's .sub, written by
the build that made this job), COMMAND runs with each --resume WORD added, `{checkpoint}`
in it replaced by PATH (Aframe's `--ckpt_path={checkpoint}`). A PATH older than FILE is
an earlier build's (whose config may differ): it is moved to PATH.stale and the program
starts afresh. W&B: WANDB_RUN_ID (unless set) is fixed for the job, from PATH and FILE's
time, and WANDB_RESUME=allow, so a resumed job continues its W&B run.

Standard library only: it runs inside the stage's image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

USAGE = "usage: resume.py --checkpoint=PATH --since=FILE [--resume=WORD ...] -- COMMAND..."


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(USAGE, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="resume.py")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--since", required=True)
    parser.add_argument("--resume", action="append", default=[])
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        print("resume.py: no command after --", file=sys.stderr)
        return 2
    checkpoint = Path(args.checkpoint)
    built = Path(args.since).stat().st_mtime_ns
    words = []
    try:
        written: int | None = checkpoint.stat().st_mtime_ns
    except FileNotFoundError:
        written = None
    if written is not None and written >= built:
        print(f"resume.py: resuming from {args.checkpoint}", file=sys.stderr, flush=True)
        words = [w.replace("{checkpoint}", args.checkpoint) for w in args.resume]
    elif written is not None:
        checkpoint.replace(f"{checkpoint}.stale")
        print(f"resume.py: {checkpoint} is an earlier build's: moved aside", file=sys.stderr)
    run = hashlib.sha256(f"{checkpoint.absolute()}:{built}".encode()).hexdigest()
    os.environ.setdefault("WANDB_RUN_ID", run[:16])
    os.environ.setdefault("WANDB_RESUME", "allow")
    os.execvp(command[0], [*command, *words])
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
