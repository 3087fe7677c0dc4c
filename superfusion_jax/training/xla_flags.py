"""XLA compiler flags measured best for training on a CPU, applied by `train.py`.

jaxlib 0.10 hands convolutions on a CPU to YNNPACK by default. For the training step's
convolutions its weight gradients ran 2.5x slower than XLA's own (Eigen) ones (batch 8 of
256 x 256, 128 -> 32 channels, 2 cores: 1.10 against 0.44 s), while inference's forward
convolutions are a little faster with it (register + fuse at 480 x 640: 1.55 s against 1.67).
So training turns it off (the stage-RF step: docs/performance.md) and inference keeps XLA's
defaults. The flag only concerns XLA's CPU compiler.
"""

from __future__ import annotations

import os

import jaxlib

# Measured on jaxlib 0.10.2; an XLA flag unknown to the installed jaxlib would abort the
# process, and a later YNNPACK may measure differently, so other versions are left alone.
_MEASURED_VERSIONS = ((0, 10), (0, 11))
NO_YNN_FUSION = "--xla_cpu_experimental_ynn_fusion_type="


def training_xla_flags() -> list[str]:
    """The flags `use_training_xla_flags` adds for the installed jaxlib (none outside the
    versions they were measured on)."""
    version = tuple(int(part) for part in jaxlib.__version__.split(".")[:2])
    low, high = _MEASURED_VERSIONS
    return [NO_YNN_FUSION] if low <= version < high else []


def use_training_xla_flags() -> list[str]:
    """Add `training_xla_flags()` to the XLA_FLAGS environment variable, except those the
    user has set a value for there. Must run before JAX's first computation (XLA reads the
    variable once). Returns the flags added."""
    present = os.environ.get("XLA_FLAGS", "")
    added = [flag for flag in training_xla_flags() if flag.split("=")[0] not in present]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([present, *added]).strip()
    return added
