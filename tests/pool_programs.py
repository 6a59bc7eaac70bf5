"""Small host programs for the pool tests: the shapes of Aframe stages, no Aframe inside.

segments OUT [LOG ARGS] write a segwizard file with two segments (and record ARGS to LOG)
record OUT [ARGS...]    append argv and the GPU environment to OUT as one JSON line
produce OUT LOG SECONDS TEXT
                        write TEXT to OUT in two halves SECONDS apart, then record TEXT to LOG
flaky MARKER OUT        fail the first time (leaving MARKER), succeed the next
fail-unless FILE OUT    fail unless FILE exists, then record
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

SEGMENTS = "# seg\tstart\tstop\tduration\n0\t1000\t1250\t250\n1\t2000\t2080\t80\n"


def record(out: str, args: list[str]) -> None:
    entry = {
        "argv": args,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "_CONDOR_AssignedGPUs": os.environ.get("_CONDOR_AssignedGPUs"),
        "env": dict(os.environ),
        "cwd": str(Path.cwd()),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def main(argv: list[str]) -> int:
    command, out, *rest = argv
    if command == "segments":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(SEGMENTS)
        if rest:
            record(rest[0], rest[1:])
    elif command == "produce":
        log, seconds, text = rest
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as handle:
            # a half-written output for a while, as a real stage's big file would be
            handle.write(text[: len(text) // 2])
            handle.flush()
            time.sleep(float(seconds))
            handle.write(text[len(text) // 2 :] + "\n")
        record(log, [text])
    elif command == "record":
        record(out, rest)
    elif command == "flaky":
        marker = Path(out)
        if not marker.exists():
            marker.touch()
            print("failing on purpose, once", file=sys.stderr)
            return 3
        record(rest[0], rest[1:])
    elif command == "interval":
        started = time.time()
        time.sleep(float(rest[0]))
        record(out, [str(started), str(time.time())])
    elif command == "consume":
        record(out, rest)
        for path in rest:
            Path(path).unlink()
    elif command == "partial":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("half")
        return 5
    elif command == "fail-unless":
        if not Path(out).exists():
            print(f"{out} is missing", file=sys.stderr)
            return 4
        record(rest[0], rest[1:])
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
