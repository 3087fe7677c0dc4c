"""Inference API: registration (by the network or training-free) and fusion of batches of pairs,
jit-compiled once per input shape.

pipe = Pipeline.pretrained()                  # or .from_checkpoint("ckpt/"), .untrained()
out = pipe.register_and_fuse(ir, vi)          # ir, vi: (N, H, W, 3) float32 RGB in [0, 1]
out["fused"], out["ir_reg"], out["disp"]      # numpy; disp (N, H, W, 2) normalised units

Registration methods (`REGISTRATIONS`): 'network' (the DenseMatcher, as the release), 'global'
and 'optimize' (training-free, `superfusion_jax.registration`: no weights needed), and
'global+network' (the global stage first, then the DenseMatcher on the residual, composed).
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax import memory
from superfusion_jax.io.model_files import load_checkpoint
from superfusion_jax.models import dense_matcher
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import FAITHFUL, Variant, variant_named
from superfusion_jax.ops.displacement import base_grid_pixels, disp_to_pixels
from superfusion_jax.ops.warp import warp
from superfusion_jax.registration import geometry, methods

REGISTRATIONS = ("network", "global", "optimize", "global+network")
# Methods that need the DenseMatcher's weights.
NETWORK_REGISTRATIONS = ("network", "global+network")
# Compiled programs a Pipeline keeps, one per (step, input shape); beyond it the least recently
# used is dropped. On CPU each holds its machine code in about 1,200 memory mappings
# ('optimize'), and Linux allows a process 65,530 (vm.max_map_count): a folder of ~50 image
# sizes kept them all and failed with an LLVM 'Cannot allocate memory'.
MAX_COMPILED = 8


def _check_variant(variant: Variant) -> None:
    """TypeError unless `variant` is a Variant (a name is refused, with how to convert it)."""
    if not isinstance(variant, Variant):
        raise TypeError(
            f"variant must be a models.variants.Variant (FAITHFUL, CORRECTED), got {variant!r}; "
            "variant_named(name) turns a name into one"
        )


class Pipeline:
    """Registration/fusion of batches of pairs with fixed variables (eval mode).

    variables: SuperFusion's {'params', 'batch_stats'}, or None for a registration-only
    pipeline of a training-free method (then `fuse` is refused). variant: a
    `models.variants.Variant` (FAITHFUL, CORRECTED; `variant_named(name)` turns a name into one),
    here and in `untrained` and `training_free`: the Python API takes the object, names are read
    only from checkpoint metadata (`from_checkpoint`, `pretrained`) and the command line.
    registration: a name of REGISTRATIONS; registration_settings: the training-free stage's
    settings (default: those of 'optimize' for 'optimize', of 'global' for 'global' and
    'global+network'); pad_multiple: the DenseMatcher's input padding (1: unpadded, the
    release's function; None: the variant's, `Variant.pad_multiple`).
    """

    def __init__(
        self,
        variables: dict | None,
        variant: Variant = FAITHFUL,
        registration: str = "network",
        registration_settings: methods.RegistrationSettings | None = None,
        pad_multiple: int | None = None,
    ):
        _check_variant(variant)
        if pad_multiple is not None and pad_multiple < 1:
            raise ValueError(f"pad_multiple must be at least 1, got {pad_multiple}")
        if registration not in REGISTRATIONS:
            raise ValueError(
                f"unknown registration {registration!r}; expected one of {REGISTRATIONS}"
            )
        if registration in NETWORK_REGISTRATIONS and (
            variables is None or "dense_matcher" not in variables["params"]
        ):
            raise ValueError(
                f"registration {registration!r} needs the registration network's weights, and "
                "this model has none (fusion only); use 'optimize' or 'global'"
            )
        self.variant = variant
        self.registration = registration
        self.settings = registration_settings or methods.settings_for(
            "optimize" if registration == "optimize" else "global"
        )
        self.model = SuperFusion(variant, pad_multiple)
        self.variables = None
        if variables is not None:
            self.variables = jax.device_put(
                {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
            )
        self._grid_quirk = variant.align_corners_base_grid
        self._register = jax.jit(self._register_batch)
        self._fuse = jax.jit(functools.partial(self.model.apply, method="fuse"))
        self._compiled: collections.OrderedDict[tuple, jax.stages.Compiled] = (
            collections.OrderedDict()
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, registration: str | None = None) -> Pipeline:
        """Load a checkpoint folder written by `superfusion convert` or training, or a
        single-file checkpoint (`.npz`, `io.model_files.save_flat`). registration: None takes the
        one its metadata names ('network' when it names none)."""
        variables, meta = load_checkpoint(path)
        return cls._from_metadata(variables, meta, registration)

    @classmethod
    def pretrained(cls, name: str | None = None, registration: str | None = None) -> Pipeline:
        """A model shipped with the package (`superfusion_jax.weights`; default: its DEFAULT),
        with the registration its metadata names unless `registration` is given."""
        from superfusion_jax import weights

        variables, meta = weights.load(name or weights.DEFAULT)
        return cls._from_metadata(variables, meta, registration)

    @classmethod
    def _from_metadata(cls, variables: dict, meta: dict, registration: str | None) -> Pipeline:
        """The Pipeline of loaded weights, of the variant their metadata names and, with
        `registration` None, the registration it names ('network' when it names none)."""
        variant = variant_named(meta["variant"])
        return cls(variables, variant, registration or meta.get("registration", "network"))

    @classmethod
    def untrained(
        cls, seed: int = 0, variant: Variant = FAITHFUL, registration: str = "network"
    ) -> Pipeline:
        """Randomly initialised weights (the release's init): outputs are meaningless."""
        x = jnp.zeros((1, 16, 16, 3), jnp.float32)
        variables = SuperFusion(variant).init(jax.random.key(seed), x, x)
        return cls(variables, variant, registration)

    @classmethod
    def training_free(cls, method: str = "optimize", variant: Variant = FAITHFUL) -> Pipeline:
        """Registration only, by a training-free method ('global' or 'optimize'); no weights."""
        return cls(None, variant, method)

    def _register_batch(self, variables: dict | None, ir: jax.Array, vi: jax.Array) -> dict:
        if self.registration == "network":
            return self.model.apply(variables, ir, vi, method="register")
        found = methods.register(ir, vi, self.settings)
        positions = found["positions"]
        if self.registration == "global+network":
            ahead = warp(
                ir, methods.positions_to_disp(positions, self._grid_quirk), self._grid_quirk
            )
            net = self.model.apply(variables, ahead, vi, method="register")["disp"]
            h, w = ir.shape[1:3]
            net_positions = base_grid_pixels(h, w) + disp_to_pixels(net, self._grid_quirk)
            compose = lambda m, p: geometry.transform_points(m, p, (h, w))
            positions = jax.vmap(compose)(found["matrix"], net_positions)
        disp = methods.positions_to_disp(positions, self._grid_quirk)
        return {
            "ir_reg": warp(ir, disp, self._grid_quirk),
            "disp": disp,
            "registration_ok": found["ok"],
            "registration_confident": found["confident"],
        }

    def _run(self, step: str, ir: np.ndarray, vi: np.ndarray) -> dict:
        """Run the jitted 'register' or 'fuse' step, compiled once per input shape (the last
        `MAX_COMPILED` kept); before its first run at a shape, MemoryError if the program needs
        more memory than is free."""
        key = (step, ir.shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
        else:
            jitted = self._register if step == "register" else self._fuse
            compiled = jitted.lower(self.variables, ir, vi).compile()
            n, h, w = ir.shape[:3]
            memory.check_fits(compiled, f"{step} of {n} pair(s) of {h}x{w} pixels")
            self._compiled[key] = compiled
            if len(self._compiled) > MAX_COMPILED:
                self._compiled.popitem(last=False)
                # JAX's own caches hold every program compiled too: only this frees the
                # dropped one (the programs kept here stay valid; other jitted functions
                # compile again on their next call).
                jax.clear_caches()
        return self._compiled[key](self.variables, ir, vi)

    def _check(self, ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ir, vi = np.asarray(ir, np.float32), np.asarray(vi, np.float32)
        if ir.shape != vi.shape or ir.ndim != 4 or ir.shape[-1] != 3:
            raise ValueError(
                f"expected ir and vi of one shape (N, H, W, 3); got {ir.shape} and {vi.shape}"
            )
        return ir, vi

    def register(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """{'ir_reg': (N, H, W, 3), 'disp': (N, H, W, 2) normalised} for ir onto vi; a
        training-free method adds 'registration_ok' (N,) bool: False where it found no
        alignment and returned the identity, and 'registration_confident' (N,) bool: False
        where the global search's best match hardly stood out from the others (the field is
        returned, but may be a wrong alignment: `registration.search.prominence`).
        ValueError for pairs it cannot register."""
        ir, vi = self._check(ir, vi)
        h, w = ir.shape[1:3]
        if self.registration in NETWORK_REGISTRATIONS and min(h, w) < dense_matcher.MIN_SIDE:
            raise ValueError(
                f"the images are {h}x{w} pixels; the registration network needs at least "
                f"{dense_matcher.MIN_SIDE} pixels on each side"
            )
        if self.registration != "network":
            methods.check_pair(ir, vi)
        out = self._run("register", ir, vi)
        return {key: np.asarray(value) for key, value in out.items()}

    def fuse(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """{'fused': (N, H, W, 3) RGB} of an aligned pair."""
        ir, vi = self._check(ir, vi)
        if self.variables is None:
            raise ValueError("this pipeline has no fusion weights (registration only)")
        return {"fused": np.asarray(self._run("fuse", ir, vi)["fused"])}

    def register_and_fuse(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """{'ir_reg', 'disp', 'fused'} (+ 'registration_ok', 'registration_confident'):
        registration of ir onto vi, then fusion of the registered pair."""
        out = self.register(ir, vi)
        return {**out, **self.fuse(out["ir_reg"], vi)}

    def disp_to_pixels(self, disp: np.ndarray) -> np.ndarray:
        """(N, H, W, 2) normalised displacement -> pixel displacement (dx, dy)."""
        return np.asarray(disp_to_pixels(jnp.asarray(disp), self._grid_quirk))
