"""Training-free registration of an infrared image onto a visible one (no trained weights).

A per-pair optimisation on a modality-independent similarity, in the spirit of ConvexAdam
(Siebert, Hansen & Heinrich, MICCAI 2021) and of exhaustive-search initialisation (SimpleITK,
Cross-Sim-NGF):
- `similarity`: NGF (squared: a contrast inversion costs nothing) and 2-D MIND-SSC features;
- `geometry`: pixel coordinates, pyramid levels, affine/homography transforms, sampling;
- `search`: the global start, a grid of rotations and scales x every translation by FFT;
- `parametric`: gradient refinement (optax Adam) of an affine transform or homography, coarse to
  fine;
- `dense`: a smooth residual field on a control grid, or a stationary velocity field integrated
  by scaling and squaring (diffeomorphic);
- `methods`: the methods by name ('global', 'optimize') and their settings, producing `disp` in
  the conventions of the rest of the package.
"""
