"""A process that loads a pair onto the CPU reuses the memory it frees: a block allocated again is not
faulted in afresh, and sizing a batch sees the freed block as available."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc; elsewhere a no-op")

# Both far above glibc's largest mmap threshold (32 MiB): without the tuning, each is a fresh mmap. The second
# is smaller: an aligned allocation (torch's) asks for a little more than its size, so a freed block of the
# very same size may not take it.
FIRST_MIB, SECOND_MIB = 256, 128
PAGE_FAULTS_ALONE = SECOND_MIB * 2**20 // 4096  # one per 4 KiB page

# Run in a fresh process: the tuning is process-wide and this test process may have loaded pairs already.
SCRIPT = """
import json, resource, sys
import torch
from lda_core.host_memory import retained_free_bytes
from lda_core.models import load_model_pair

if sys.argv[1] == "load":
    load_model_pair(sys.argv[2], sys.argv[3], device="cpu")

def page_faults_filling(mib):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(mib * 2**18)  # float32: 2**18 per MiB, written through, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

page_faults_filling({first})
print(json.dumps({{"page_faults": page_faults_filling({second}), "retained": retained_free_bytes()}}))
"""


def _second_fill(*arguments: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(first=FIRST_MIB, second=SECOND_MIB), *arguments],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_a_pair_on_the_cpu_makes_freed_blocks_reusable_without_page_faults(tiny_pair_dirs):
    before, after = tiny_pair_dirs
    untuned = _second_fill("no-load")
    tuned = _second_fill("load", str(before), str(after))

    assert untuned["page_faults"] > PAGE_FAULTS_ALONE // 2  # the block came back as fresh pages
    assert tuned["page_faults"] < PAGE_FAULTS_ALONE // 20  # the freed block's pages were reused
    assert tuned["retained"] >= FIRST_MIB * 2**20  # and it is counted as free for the next batch
