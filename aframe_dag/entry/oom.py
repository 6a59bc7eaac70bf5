"""Run a GPU program; exit 86 if it died of running out of GPU memory.

    oom.py -- COMMAND...

HTCondor cannot read a job's stderr, but it can act on its exit code: the stage's .sub
holds a job that exits 86 and releases it to a GPU with more memory. The program's
stderr passes through unchanged; any other exit code is the program's own (86 from the
program itself becomes 1, so that only this wrapper's verdict means out-of-memory).

Standard library only: it runs inside the stage's image.
"""

from __future__ import annotations

import re
import subprocess
import sys

OUT_OF_MEMORY = 86
# what PyTorch, CUDA, cuBLAS and TensorRT say when a GPU allocation fails
PATTERN = re.compile(
    rb"CUDA out of memory|CUDA error: out of memory|OutOfMemoryError|"
    rb"CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation|CUDNN_STATUS_ALLOC_FAILED"
)


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: oom.py -- COMMAND...", file=sys.stderr)
        return 2
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    assert process.stderr is not None
    out_of_memory = False
    for line in process.stderr:
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
        out_of_memory = out_of_memory or PATTERN.search(line) is not None
    code = process.wait()
    if code != 0 and out_of_memory:
        print(f"oom: the program ran out of GPU memory (exit {code})", file=sys.stderr)
        return OUT_OF_MEMORY
    return 1 if code == OUT_OF_MEMORY else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
