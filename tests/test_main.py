"""``cnnarch.__main__``: how the console script ends its process.

A process that joined a process group (``cnnarch.train.distributed.setup`` under torchrun)
ends through ``end_process`` without the interpreter's finalization: its output is flushed
and its exit code kept, and no exit handler runs. Any other process finalizes as usual.
"""

import subprocess
import sys

import pytest

_EXIT_PROBE = """
import atexit, sys
from cnnarch.__main__ import end_process
from cnnarch.train import distributed
distributed._joined = sys.argv[1] == "joined"  # what setup() records when it joins a group
atexit.register(lambda: print("finalized"))
print("written before the exit", end="")  # block-buffered: lost unless flushed
end_process(3)
"""


@pytest.mark.parametrize("joined", [True, False])
def test_a_process_that_joined_a_group_ends_without_finalization(joined):
    proc = subprocess.run([sys.executable, "-c", _EXIT_PROBE, "joined" if joined else "alone"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout.startswith("written before the exit"), proc.stdout
    assert ("finalized" in proc.stdout) is not joined, proc.stdout
