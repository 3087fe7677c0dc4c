"""Memory a compiled program needs, and memory a device has free: checked before a run, so
that a pair too large for the machine is refused with its numbers instead of being killed.

XLA states a compiled program's buffers (`Compiled.memory_analysis()`): its arguments, outputs
and temporaries; on the CPU this agrees with the measured growth of resident memory within a few
per cent (docs/reliability.md).
"""

from __future__ import annotations

import jax
import psutil


def needed_bytes(compiled: jax.stages.Compiled) -> int | None:
    """Bytes of the buffers of one call of `compiled` (arguments + outputs + temporaries), or
    None where the backend does not state them."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Free memory of `device` (default: the first one) in bytes: on an accelerator its limit
    minus what is in use, on the CPU the system's available memory; None if not known."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return int(psutil.virtual_memory().available)
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))


def check_fits(compiled: jax.stages.Compiled, what: str) -> None:
    """MemoryError naming `what` and both numbers when `compiled` needs more than is free."""
    needed, free = needed_bytes(compiled), available_bytes()
    if needed is not None and free is not None and needed > free:
        raise MemoryError(
            f"{what} needs about {needed / 1e9:.1f} GB of memory and {free / 1e9:.1f} GB is "
            "free; memory grows with the number of pixels: use smaller images (or fewer pairs "
            "at once)"
        )
