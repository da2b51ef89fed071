"""`cloud.service`: `settle_garbage_collector`, in a process of its own (it changes the
collector for good): what exists at start-up is frozen, collections come less often."""

from __future__ import annotations

import subprocess
import sys

from cloud.service import GC_OLDER_THRESHOLD, GC_YOUNG_THRESHOLD


def test_the_collector_is_settled_after_start_up() -> None:
    script = (
        "import gc\n"
        "from cloud.service import settle_garbage_collector\n"
        "assert gc.get_freeze_count() == 0\n"
        "settle_garbage_collector()\n"
        "print(gc.get_freeze_count() > 0, *gc.get_threshold())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    frozen, young, older, oldest = result.stdout.split()
    assert frozen == "True"
    assert (int(young), int(older), int(oldest)) == (
        GC_YOUNG_THRESHOLD, GC_OLDER_THRESHOLD, GC_OLDER_THRESHOLD
    )
