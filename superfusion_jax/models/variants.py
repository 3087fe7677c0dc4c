"""The two variants of the network: `faithful` reproduces the release, `corrected` fixes it.

Each quirk of the release (github.com/Linfeng-Tang/SuperFusion) is one named switch
here, so that every place in the model that behaves differently between the variants reads the
switch by the quirk's name.

| quirk                             | faithful (release)           | corrected              |
|-----------------------------------|------------------------------|------------------------|
| 1 `sigmoid_typo`                  | no sigmoid on attention/mask | sigmoid on both        |
| 2 `discarded_direction_attention` | direction weights discarded  | directions weighted    |
| 3 `align_corners_base_grid`       | disp 0 samples j*W/(W-1)-0.5 | disp 0 is the identity |

Quirk 4 (displacements divided by (W-1, H-1)) only fixes the unit of the network's output and is
kept in both variants; quirk 5 (semantic loss weight 0) is a training setting; quirk 6 (BatchNorm in
the flow estimators) is architecture and kept.

Padding is not a quirk but a choice of ours that changes the function: the release runs the
DenseMatcher on the image as it is, resizing its coarse fields to each level's odd sizes; padding
the inputs to a multiple of 8 gives every level exact halves, which changes the field near all
borders of an image whose sides are not multiples of 8. `default_pad_multiple`: 1 (unpadded, as
the release) for faithful, 8 for corrected.
"""

from __future__ import annotations

import dataclasses

VARIANTS = ("faithful", "corrected")


@dataclasses.dataclass(frozen=True)
class Quirks:
    """Which of the release's quirks a variant reproduces (True = behave like the release)."""

    sigmoid_typo: bool
    discarded_direction_attention: bool
    align_corners_base_grid: bool


def default_pad_multiple(variant: str) -> int:
    """The DenseMatcher's input padding multiple of `variant`: 1 (none) faithful, 8 corrected."""
    quirks_for(variant)
    return 1 if variant == "faithful" else 8


def quirks_for(variant: str) -> Quirks:
    """Return the quirk switches of `variant` ('faithful' or 'corrected')."""
    if variant == "faithful":
        return Quirks(True, True, True)
    if variant == "corrected":
        return Quirks(False, False, False)
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
