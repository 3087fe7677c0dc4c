"""What the two command lines share: the `superfusion` command (cli.py) and evaluate.py.

The registration methods, the usage-error exception they both turn into a one-line message and
exit status 2, pairing the images of two folders, the check that some weights are at hand, and
loading the Pipeline. Each command keeps its own messages; these functions print nothing. JAX is
imported only by `load_pipeline`, so that a command checks its arguments before paying for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from superfusion_jax import weights
from superfusion_jax.io.pairs import PairListing, find_pairs
from superfusion_jax.models.variants import FAITHFUL, Variant

if TYPE_CHECKING:
    from superfusion_jax.inference import Pipeline

# The registration methods (superfusion_jax.inference.REGISTRATIONS, restated so that a command
# line parses without importing JAX) and those that need no network weights.
REGISTRATIONS = ("network", "global", "optimize", "global+network")
TRAINING_FREE = ("global", "optimize")


class UsageError(Exception):
    """A problem with the command line or its paths, found before any image is processed."""


def list_pairs(ir: str | Path, vi: str | Path) -> PairListing:
    """`io.pairs.find_pairs(ir, vi)`: the pairs of two image files or two folders; a path that
    does not exist, or a file given with a folder, is a UsageError (find_pairs' message)."""
    try:
        return find_pairs(ir, vi)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error


def require_weights(checkpoint: str | Path | None, untrained: bool, message: str) -> None:
    """UsageError(`message`) when no weights are at hand: no checkpoint given, random weights
    not asked for (`untrained`), and this installation ships no model (superfusion_jax/weights)."""
    if checkpoint is None and not untrained and not weights.available():
        raise UsageError(message)


def load_pipeline(
    checkpoint: str | Path | None,
    *,
    untrained: bool = False,
    registration: str | None = None,
    variant: Variant = FAITHFUL,
) -> Pipeline:
    """The Pipeline to run: random weights of `variant` with `untrained` (registration default
    'network'), else `checkpoint` (a folder or a single-file .npz) or, when it is None, the
    shipped model `weights.DEFAULT`; those two keep their own variant and, with `registration`
    None, the registration their metadata names. A checkpoint that is missing or refused
    (FileNotFoundError, ValueError) is a UsageError carrying the loader's message."""
    from superfusion_jax.inference import Pipeline

    try:
        if untrained:
            return Pipeline.untrained(variant=variant, registration=registration or "network")
        if checkpoint is None:
            return Pipeline.pretrained(registration=registration)
        return Pipeline.from_checkpoint(checkpoint, registration=registration)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
