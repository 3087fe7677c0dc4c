"""Modality-independent similarities between an infrared and a visible image, chosen by name.

Each similarity turns a grey image (h, w) into per-pixel features (h, w, C) and scores a pair of
feature maps pixel by pixel (higher is better). The moving image's features are computed once
per level (`prepare`) and resampled at the positions a transform gives (`warped`), so each
optimiser iteration costs one bilinear sampling.
- 'ngf': squared normalised gradient fields (Haber & Modersitzki, 2006; squared as in
  Cross-Sim-NGF, so a contrast inversion between modalities costs nothing): n = grad I /
  sqrt(|grad I|^2 + eps^2), score (n_f . n_m)^2 in [0, 1]. eps = `eta` x the image's own mean
  gradient magnitude, so dark night images are not all noise. Features (nx^2, ny^2,
  sqrt(2) nx ny) make the score a dot product; the moving gradient is turned by the
  transform's Jacobian (grad (M o T) = J^T (grad M) o T) before normalising.
- 'mind': 2-D MIND-SSC (Heinrich et al., MICCAI 2013; ConvexAdam's descriptor): squared
  differences of patches (box of side 2r + 1) at the four neighbour pairs {(d,0),(0,d)},
  {(0,d),(-d,0)}, {(-d,0),(0,-d)}, {(0,-d),(d,0)} around each pixel, minus their minimum,
  divided by their mean (clamped around its image mean), then exp(-x); score minus the mean
  squared descriptor difference.
- 'ngf+mind': the sum of both scores (MIND's weighted by `mind_weight`).

`expansion` writes a score as a sum of products a_k(fixed) b_k(moving), which lets the global
search evaluate it for every translation at once with FFT correlations.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from superfusion_jax.ops.filters import gaussian_blur, spatial_gradient

Array = jax.Array


def smooth(x: Array, sigma: float) -> Array:
    """Gaussian blur (std `sigma` pixels, replicated border) of an (h, w, C) map. Features are
    blurred before they are resampled: bilinear interpolation smooths a map by an amount that
    depends on the fractional position (most at half a pixel), which otherwise biases every
    similarity toward or away from half-pixel shifts (0.5 px on the aligned MSRS pairs)."""
    if sigma <= 0:
        return x
    size = 2 * int(round(2.5 * sigma)) + 1
    return gaussian_blur(x[None], size, sigma, border="replicate")[0]


def _grey_gradient(image: Array) -> Array:
    """Sobel gradient (h, w, 2), (d/dx, d/dy) in intensity per level pixel."""
    return spatial_gradient(image[None, :, :, None])[0, :, :, 0, :]


def _normalise(gradient: Array, eps: Array) -> Array:
    """NGF features (h, w, 3) = (nx^2, ny^2, sqrt(2) nx ny) of a gradient field (h, w, 2)."""
    norm2 = jnp.sum(gradient**2, axis=-1, keepdims=True) + eps**2
    gx, gy = gradient[..., 0], gradient[..., 1]
    n2 = norm2[..., 0]
    return jnp.stack([gx * gx / n2, gy * gy / n2, jnp.sqrt(2.0) * gx * gy / n2], axis=-1)


@dataclasses.dataclass(frozen=True)
class NGF:
    """Squared normalised gradient fields; eta scales eps to the image's mean gradient, sigma
    (level pixels) blurs the gradient (`smooth`)."""

    eta: float = 1.0
    sigma: float = 1.0

    def prepare(self, image: Array) -> dict:
        gradient = smooth(_grey_gradient(image), self.sigma)
        magnitude = jnp.sqrt(jnp.sum(gradient**2, axis=-1))
        return {"gradient": gradient, "eps": self.eta * jnp.mean(magnitude) + 1e-6}

    def features(self, prepared: dict) -> Array:
        return _normalise(prepared["gradient"], prepared["eps"])

    def warped(self, prepared: dict, sampler, jacobian: Array) -> Array:
        """Features of the moving image composed with the transform: `sampler` resamples an
        (h, w, C) map at the transform's positions; jacobian (2, 2) or (..., 2, 2) px/px."""
        gradient = sampler(prepared["gradient"])
        turned = jnp.einsum(
            "...ji,...j->...i", jnp.broadcast_to(jacobian, gradient.shape[:-1] + (2, 2)), gradient
        )
        return _normalise(turned, prepared["eps"])

    @staticmethod
    def score(fixed: Array, moving: Array) -> Array:
        return jnp.sum(fixed * moving, axis=-1)

    @staticmethod
    def expansion(fixed: Array, moving: Array) -> tuple[Array, Array]:
        return fixed, moving


def _box(x: Array, radius: int) -> Array:
    """Mean over (2 radius + 1)^2 windows of (h, w, C), edge values repeated."""
    width = 2 * radius + 1
    padded = jnp.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    total = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (width, width, 1), (1, 1, 1), "VALID")
    return total / (width * width)


def _shift(image: Array, dx: int, dy: int) -> Array:
    """image(p + (dx, dy)) for every pixel p of (h, w), edge values repeated."""
    pad = max(abs(dx), abs(dy))
    padded = jnp.pad(image, pad, mode="edge")
    h, w = image.shape
    return padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]


@dataclasses.dataclass(frozen=True)
class MIND:
    """2-D MIND-SSC: patch radius r, neighbour dilation d, descriptor blur sigma (`smooth`),
    all in level pixels; variance_floor: the smallest local variance, as a fraction of its image
    mean (ConvexAdam: 0.001; higher keeps the noise of flat, dark regions from counting as
    structure)."""

    radius: int = 1
    dilation: int = 2
    sigma: float = 1.0
    variance_floor: float = 0.001

    def descriptor(self, image: Array) -> Array:
        d = self.dilation
        neighbours = [(d, 0), (0, d), (-d, 0), (0, -d)]
        shifted = [_shift(image, dx, dy) for dx, dy in neighbours]
        pairs = [(shifted[k] - shifted[(k + 1) % 4]) ** 2 for k in range(4)]
        ssd = _box(jnp.stack(pairs, axis=-1), self.radius)
        ssd = ssd - jnp.min(ssd, axis=-1, keepdims=True)
        variance = jnp.mean(ssd, axis=-1, keepdims=True)
        level = jnp.mean(variance)
        variance = jnp.clip(variance, self.variance_floor * level + 1e-12, 1000.0 * level + 1e-12)
        return jnp.exp(-ssd / variance)

    def prepare(self, image: Array) -> dict:
        return {"descriptor": smooth(self.descriptor(image), self.sigma)}

    def features(self, prepared: dict) -> Array:
        return prepared["descriptor"]

    def warped(self, prepared: dict, sampler, jacobian: Array) -> Array:
        del jacobian  # the descriptor is not turned with the transform
        return sampler(prepared["descriptor"])

    @staticmethod
    def score(fixed: Array, moving: Array) -> Array:
        return -jnp.mean((fixed - moving) ** 2, axis=-1)

    @staticmethod
    def expansion(fixed: Array, moving: Array) -> tuple[Array, Array]:
        c = fixed.shape[-1]
        ones = jnp.ones(fixed.shape[:-1] + (1,), fixed.dtype)
        a = jnp.concatenate([-jnp.sum(fixed**2, -1, keepdims=True) / c, ones, 2.0 * fixed / c], -1)
        b = jnp.concatenate([ones, -jnp.sum(moving**2, -1, keepdims=True) / c, moving], -1)
        return a, b


@dataclasses.dataclass(frozen=True)
class Combined:
    """NGF score + mind_weight x MIND score; features concatenated (3 NGF channels first)."""

    ngf: NGF = NGF()
    mind: MIND = MIND()
    mind_weight: float = 1.0

    def prepare(self, image: Array) -> dict:
        return {"ngf": self.ngf.prepare(image), "mind": self.mind.prepare(image)}

    def features(self, prepared: dict) -> Array:
        return jnp.concatenate(
            [self.ngf.features(prepared["ngf"]), self.mind.features(prepared["mind"])], -1
        )

    def warped(self, prepared: dict, sampler, jacobian: Array) -> Array:
        return jnp.concatenate(
            [
                self.ngf.warped(prepared["ngf"], sampler, jacobian),
                self.mind.warped(prepared["mind"], sampler, jacobian),
            ],
            -1,
        )

    def score(self, fixed: Array, moving: Array) -> Array:
        ngf = NGF.score(fixed[..., :3], moving[..., :3])
        return ngf + self.mind_weight * MIND.score(fixed[..., 3:], moving[..., 3:])

    def expansion(self, fixed: Array, moving: Array) -> tuple[Array, Array]:
        a1, b1 = NGF.expansion(fixed[..., :3], moving[..., :3])
        a2, b2 = MIND.expansion(fixed[..., 3:], moving[..., 3:])
        return jnp.concatenate([a1, self.mind_weight * a2], -1), jnp.concatenate([b1, b2], -1)


SIMILARITIES = {"ngf": NGF, "mind": MIND, "ngf+mind": Combined}


def make_similarity(name: str):
    """The similarity called `name` (a key of SIMILARITIES) with its default settings."""
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; expected one of {sorted(SIMILARITIES)}")
    return SIMILARITIES[name]()
