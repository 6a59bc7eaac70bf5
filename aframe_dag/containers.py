"""The container modes (`condor.container`) as one table: what each means for a job.

Adding a mode is adding its name to `ContainerMode` and its row to `MODES`; the code that
writes and checks jobs reads the row's fields, never the mode's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ContainerMode = Literal["apptainer", "container-universe", "none"]


@dataclass(frozen=True)
class Mode:
    """What a container mode means for a job."""

    universe: str  # the HTCondor universe
    condor_starts_image: bool  # container_image = IMAGE: HTCondor starts the job in it
    apptainer_exec: bool  # the executable is `apptainer exec [--nv] --bind ... IMAGE`
    host_commands: bool  # no image: commands (and wrappers, with sys.executable) run here
    sends_entry_scripts: bool  # entry scripts are transferred and called by name
    refuses_dev: str  # why --dev cannot bind a checkout into its jobs; "" when it can


MODES: dict[ContainerMode, Mode] = {
    "apptainer": Mode(
        universe="vanilla",
        condor_starts_image=False,
        apptainer_exec=True,
        host_commands=False,
        sends_entry_scripts=False,
        refuses_dev="",
    ),
    "container-universe": Mode(
        universe="container",
        condor_starts_image=True,
        apptainer_exec=False,
        host_commands=False,
        sends_entry_scripts=True,
        refuses_dev="lets a job add no binds",
    ),
    "none": Mode(
        universe="vanilla",
        condor_starts_image=False,
        apptainer_exec=False,
        host_commands=True,
        sends_entry_scripts=False,
        refuses_dev="runs host commands",
    ),
}
