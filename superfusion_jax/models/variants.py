"""The two variants of the network: `faithful` reproduces the release, `corrected` fixes it.

A variant is one frozen `Variant` object (`FAITHFUL`, `CORRECTED`), passed as it is from the
command line, the training config or a checkpoint's metadata (which hold its name; `variant_named`
turns a name into the object, once, where it comes in) down to every place in the model that
behaves differently between the variants, which reads the switch by the quirk's name. It is
hashable: a Flax module attribute and a static argument of jitted functions.

Each quirk of the release (github.com/Linfeng-Tang/SuperFusion) is one named switch (True = behave
like the release):

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
borders of an image whose sides are not multiples of 8. `Variant.pad_multiple`, the DenseMatcher's
default input padding: 1 (unpadded, as the release) for faithful, 8 for corrected.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Variant:
    """A variant of the network: its name, which of the release's quirks it reproduces (True =
    behave like the release) and the DenseMatcher's default input padding multiple."""

    name: str
    sigmoid_typo: bool
    discarded_direction_attention: bool
    align_corners_base_grid: bool
    pad_multiple: int


FAITHFUL = Variant(
    "faithful",
    sigmoid_typo=True,
    discarded_direction_attention=True,
    align_corners_base_grid=True,
    pad_multiple=1,
)
CORRECTED = Variant(
    "corrected",
    sigmoid_typo=False,
    discarded_direction_attention=False,
    align_corners_base_grid=False,
    pad_multiple=8,
)

# The variants by name, and their names (the choices of --variant and config.variant).
BY_NAME: dict[str, Variant] = {v.name: v for v in (FAITHFUL, CORRECTED)}
VARIANTS: tuple[str, ...] = tuple(BY_NAME)


def variant_named(name: str) -> Variant:
    """The Variant called `name` ('faithful' or 'corrected'); ValueError naming the choices."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}") from None
