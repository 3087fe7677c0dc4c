"""XLA's host buffers on transparent huge pages: the command-line programs restart themselves so.

On a CPU, XLA allocates each run's buffers with malloc, and glibc serves allocations this large
with fresh memory maps that it returns to the system when they are freed, so every run of a
compiled program faults all its buffers in again, one 4 KiB page at a time: 1.14 million page
faults (4.7 GB) per stage-RF training step. glibc's tunable `glibc.malloc.hugetlb=1` (glibc
2.35 and later) asks the kernel for 2 MiB transparent huge pages for those maps instead, which
the kernel honours where the system's THP mode is 'madvise' (with 'always' it does so for any
map already; with 'never', for none). Measured on 2 cores with THP 'madvise', alternating runs
with the tunable and without (docs/performance.md): the stage-RF training step 5.85-5.87 s
instead of 7.34-7.53 s (11 thousand page faults per step), stage FS 1.09-1.13 s instead of
1.35-1.37 s, register + fuse of a 480 x 640 pair 0.63-0.65 s instead of 0.86-0.90 s.

glibc reads its tunables once, when a program starts, so the entry points (`train.py`,
`evaluate.py`, `superfusion`, the benchmarks) call `restart_with_huge_pages()` first: it
re-executes the same command (same process id, arguments and environment, plus the tunable)
when it would help and is not set yet. A `GLIBC_TUNABLES` that already names
`glibc.malloc.hugetlb` (e.g. `=0` to opt out) is left as it is. Library code never restarts.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
# The first glibc release with `glibc.malloc.hugetlb`.
MIN_GLIBC = (2, 35)
THP_MODE_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode(path: Path = THP_MODE_FILE) -> str | None:
    """The kernel's transparent-huge-page mode ('always', 'madvise' or 'never': the bracketed
    word of `path`), or None where the file is missing or unreadable (not Linux, no THP)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def glibc_version() -> tuple[int, ...] | None:
    """The C library's version, e.g. (2, 36), or None when it is not glibc."""
    library, version = platform.libc_ver()
    if library != "glibc" or not version:
        return None
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def should_restart(
    environ: Mapping[str, str], glibc: tuple[int, ...] | None, mode: str | None
) -> bool:
    """Whether restarting with `glibc.malloc.hugetlb=1` would change anything: glibc new enough
    to know the tunable, THP mode 'madvise', and the environment's GLIBC_TUNABLES not naming
    the tunable already (neither ours from an earlier restart nor the user's own value)."""
    if glibc is None or glibc < MIN_GLIBC or mode != "madvise":
        return False
    return TUNABLE not in environ.get("GLIBC_TUNABLES", "")


def restart_with_huge_pages() -> None:
    """Re-execute this command with `glibc.malloc.hugetlb=1` added to GLIBC_TUNABLES when
    `should_restart` says so; otherwise return at once. Call it first thing in a program's
    entry point, before any work (it does not return when it restarts)."""
    if not sys.executable or not should_restart(os.environ, glibc_version(), thp_mode()):
        return
    present = os.environ.get("GLIBC_TUNABLES", "")
    os.environ["GLIBC_TUNABLES"] = f"{present}:{TUNABLE}=1" if present else f"{TUNABLE}=1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)
