"""Small host programs for the pool tests: the shapes of Aframe stages, no Aframe inside.

segments OUT [LOG ARGS] write a segwizard file with two segments (and record ARGS to LOG)
record OUT [ARGS...]    append argv and the GPU environment to OUT as one JSON line
produce OUT LOG SECONDS TEXT
                        write TEXT to OUT in two halves SECONDS apart, then record TEXT to LOG
flaky MARKER OUT        fail the first time (leaving MARKER), succeed the next
fail-unless FILE OUT    fail unless FILE exists, then record
serve LOG PORT          an HTTP service (/ready, /value) until SIGTERM, noted in LOG
client OUT ADDRESS      write what the service at ADDRESS answers on /value to OUT
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sys
import threading
import time
import urllib.request
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


def serve(log: str, port: int) -> None:
    """Answer /ready (200 after a moment, like a server loading models) and /value."""
    started = time.monotonic()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ready" and time.monotonic() - started < 0.5:
                self.send_response(503)
                self.end_headers()
                return
            body = f"served by {os.getpid()} on GPU {os.environ.get('CUDA_VISIBLE_DEVICES')}"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)

    def stop(signum: int, _frame: object) -> None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"stopped by signal {signum}\n")
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"listening on {port}\n")
    server.serve_forever()


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
    elif command == "serve":
        serve(out, int(rest[0]))
    elif command == "client":
        with urllib.request.urlopen(f"http://{rest[0]}/value", timeout=10) as response:
            answer = response.read().decode()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(answer)
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
