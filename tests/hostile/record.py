"""The job of the hostile-input tests: writes its arguments, directory and HOSTILE_*
environment to the JSON file named by its first argument."""

import json
import os
import sys
from pathlib import Path

out, *args = sys.argv[1:]
env = {k: v for k, v in os.environ.items() if k.startswith("HOSTILE_")}
with open(out, "w", encoding="utf-8") as handle:
    json.dump({"argv": args, "cwd": str(Path.cwd()), "env": env}, handle)
