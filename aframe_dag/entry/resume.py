"""Start a program, resuming from its checkpoint if this job already wrote one.

    resume.py --checkpoint=PATH --since=FILE [--resume=WORD ...] -- COMMAND...
    resume.py --checkpoint=PATH --exit-every=SECONDS [--resume=WORD ...] -- COMMAND...

A job evicted from its slot (or killed with run-local) starts again from the top; the
program wrote PATH as it went. When PATH is this job's, COMMAND runs with each --resume
WORD added, `{checkpoint}` in it replaced by PATH (Aframe's `--ckpt_path={checkpoint}`).

With the shared filesystem (--since): PATH is this job's if it is newer than FILE (the
stage's .sub, written by the build that made this job). A PATH older than FILE is an
earlier build's (whose config may differ): it is moved to PATH.stale and the program
starts afresh. COMMAND replaces this process.

Without it (--exit-every): PATH is in the job's scratch dir, so it is this job's. The
wrapper runs COMMAND and, once the program has written a new checkpoint (unchanged for
a fifth of a second) at least SECONDS after it started, stops it and exits 85: HTCondor's
self-checkpointing (the .sub's checkpoint_exit_code) copies PATH to the access point and
starts the job again in the same scratch dir; an evicted job starts elsewhere with PATH
sent back. A signal to the wrapper (HTCondor's eviction) goes to the program.

W&B: WANDB_RUN_ID (unless set) is fixed for as long as the checkpoint lives (from PATH and
FILE's time, or from HTCondor's GlobalJobId), and WANDB_RESUME=allow, so a resumed job
continues its W&B run.

Standard library only: it runs inside the stage's image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

USAGE = (
    "usage: resume.py --checkpoint=PATH (--since=FILE | --exit-every=SECONDS) "
    "[--resume=WORD ...] -- COMMAND..."
)
CHECKPOINTED = 85  # the .sub's checkpoint_exit_code (ERESTART, the manual's suggestion)
STOP_GRACE = 60  # seconds the program has to exit after SIGTERM before SIGKILL
POLL = 0.2  # seconds between looks at the checkpoint: one unchanged that long is written


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(USAGE, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="resume.py", usage=USAGE)
    parser.add_argument("--checkpoint", required=True)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--since")
    when.add_argument("--exit-every", type=float)
    parser.add_argument("--resume", action="append", default=[])
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        print("resume.py: no command after --", file=sys.stderr)
        return 2
    checkpoint = Path(args.checkpoint)
    written = _written(checkpoint)
    if args.since is not None:
        built = Path(args.since).stat().st_mtime_ns
        if written is not None and written[0] < built:
            checkpoint.replace(f"{checkpoint}.stale")
            print(f"resume.py: {checkpoint} is an earlier build's: moved aside", file=sys.stderr)
            written = None
        run = f"{checkpoint.absolute()}:{built}"
    else:
        run = _global_job_id() or str(checkpoint.absolute())
    words = []
    if written is not None:
        print(f"resume.py: resuming from {args.checkpoint}", file=sys.stderr, flush=True)
        words = [w.replace("{checkpoint}", args.checkpoint) for w in args.resume]
    os.environ.setdefault("WANDB_RUN_ID", hashlib.sha256(run.encode()).hexdigest()[:16])
    os.environ.setdefault("WANDB_RESUME", "allow")
    if args.since is not None:
        os.execvp(command[0], [*command, *words])
    return _run_until_checkpoint([*command, *words], checkpoint, written, args.exit_every)


def _run_until_checkpoint(
    command: list[str], checkpoint: Path, first: tuple[int, int] | None, every: float
) -> int:
    """Run the program; exit 85 once it wrote a checkpoint `every` seconds after it began."""
    started = time.monotonic()
    program = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        program.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, forward)
    seen = first
    while True:
        try:
            code = program.wait(timeout=POLL)
            if code < 0:  # killed by a signal: as a shell says it
                return 128 - code
            return 1 if code == CHECKPOINTED else code  # 85 is this wrapper's word only
        except subprocess.TimeoutExpired:
            pass
        now = _written(checkpoint)
        settled = now is not None and now == seen and now != first  # unchanged since the last look
        seen = now
        if settled and time.monotonic() - started >= every:
            break
    print(f"resume.py: {checkpoint} written: stopping, for HTCondor to take it", file=sys.stderr)
    program.terminate()
    try:
        program.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        program.kill()
        program.wait()
    return CHECKPOINTED


def _written(path: Path) -> tuple[int, int] | None:
    """When the checkpoint was last written, and its size; None if there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _global_job_id() -> str | None:
    """The HTCondor job's GlobalJobId, from the job ad the starter gives it."""
    ad = os.environ.get("_CONDOR_JOB_AD")
    if not ad:
        return None
    try:
        lines = Path(ad).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip().lower() == "globaljobid":
            return value.strip().strip('"')
    return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
