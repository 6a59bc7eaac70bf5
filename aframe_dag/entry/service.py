"""Run a stage's service (a Triton server) beside its nodes, and tell them where it is.

    service.py serve --address-file RUN/STAGE.address --ports grpc,http [--ready URL] -- CMD...
    service.py wait RUN/STAGE.address

`serve` picks a free port for each name (CMD and URL say `{grpc}`), starts CMD, waits
until URL answers 200 (or the first port accepts connections), then writes the address
file, which condor_submit includes: `SERVICE_ADDRESS = host:port`. On SIGTERM (DAGMan
removes a SERVICE node when its DAG is done; run-local does the same) it stops CMD and
removes the file. If CMD fails first, it writes ADDRESS_FILE.failed with the reason.

`wait` is each node's PRE script: exit 0 once the address is there, 2 if the service
failed, 75 (DAGMan defers the script and runs it again later) while it starts.

Standard library only: it runs inside the service's image and on the access point.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

NOT_YET = 75  # the DAG's `SCRIPT DEFER 75 ...` defers the PRE script on this status
FAILED = 2
STOP_GRACE = 30  # seconds the service gets to stop before it is killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    serve = commands.add_parser("serve", help="start the service and publish its address")
    serve.add_argument("--address-file", type=Path, required=True)
    serve.add_argument("--ports", default="port", help="names of the ports to pick")
    serve.add_argument("--ready", help="URL that answers 200 once the service is ready")
    serve.add_argument("--timeout", type=float, default=3600, help="seconds to get ready")
    serve.add_argument("command", nargs=argparse.REMAINDER)
    wait = commands.add_parser("wait", help="exit 0 once the address is published")
    wait.add_argument("address_file", type=Path)
    args = parser.parse_args(argv)
    if args.action == "wait":
        return wait_for(args.address_file)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("serve: no command after --")
    return run_service(args.address_file, args.ports.split(","), args.ready, command, args.timeout)


def wait_for(address_file: Path) -> int:
    if address_file.is_file():
        return 0
    failed = failure_file(address_file)
    if failed.is_file():
        print(f"the service failed: {failed.read_text().strip()}", file=sys.stderr)
        return FAILED
    return NOT_YET


def failure_file(address_file: Path) -> Path:
    return address_file.with_name(address_file.name + ".failed")


def run_service(
    address_file: Path, names: list[str], ready: str | None, command: list[str], timeout: float
) -> int:
    for stale in (address_file, failure_file(address_file)):
        stale.unlink(missing_ok=True)
    ports = {name: free_port() for name in names}
    command = [fill(word, ports) for word in command]
    stopping = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    print(f"service: ports {ports}; starting: {' '.join(command)}", flush=True)
    try:
        process = subprocess.Popen(command)
    except OSError as exc:
        return give_up(address_file, f"cannot start {command[0]}: {exc.strerror}")
    deadline = time.monotonic() + timeout
    url = fill(ready, ports) if ready else None
    while not stopping and not is_ready(url, ports[names[0]]):
        if process.poll() is not None:
            return give_up(address_file, f"{command[0]} exited with {process.returncode}")
        if time.monotonic() > deadline:
            halt(process)
            return give_up(address_file, f"not ready after {timeout:.0f} s")
        time.sleep(1)
    if not stopping:
        address = f"{host_address()}:{ports[names[0]]}"
        publish(address_file, address)
        print(f"service: ready at {address}", flush=True)
    while not stopping and process.poll() is None:
        time.sleep(0.5)
    address_file.unlink(missing_ok=True)
    if stopping:
        print("service: stopping", flush=True)
        halt(process)
        return 0
    return give_up(address_file, f"{command[0]} exited with {process.returncode}")


def fill(text: str, ports: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ports.get(m.group(1), m.group(0))), text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def is_ready(url: str | None, port: int) -> bool:
    if url is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def host_address() -> str:
    """This machine's address as the pool knows it, so that other slots can connect."""
    machine_ad = os.environ.get("_CONDOR_MACHINE_AD")
    if machine_ad and Path(machine_ad).is_file():
        text = Path(machine_ad).read_text(errors="replace")
        match = re.search(r'^MyAddress\s*=\s*"<([^:>?]+)', text, re.MULTILINE)
        if match:
            return match.group(1)
    try:
        return socket.gethostbyname(socket.getfqdn())
    except OSError:
        return "127.0.0.1"


def publish(address_file: Path, address: str) -> None:
    """Write the address file atomically: a reader sees all of it or nothing."""
    temporary = address_file.with_name(f".{address_file.name}.{os.getpid()}")
    temporary.write_text(
        f"# the service of this stage, written by {socket.gethostname()} pid {os.getpid()};\n"
        "# removed when it stops\n"
        f"SERVICE_ADDRESS = {address}\n"
    )
    temporary.replace(address_file)


def halt(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def give_up(address_file: Path, reason: str) -> int:
    print(f"service: {reason}", file=sys.stderr, flush=True)
    failure_file(address_file).write_text(reason + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
