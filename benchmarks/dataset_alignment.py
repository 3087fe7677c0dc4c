"""How well are a dataset's ALIGNED infrared-visible pairs aligned? An independent tool's answer.

    pip install SimpleITK
    python benchmarks/dataset_alignment.py              # the 20 pairs of ../shared/data/msrs_test
    python benchmarks/dataset_alignment.py --synthetic  # the control: synthetic infrared
    python benchmarks/dataset_alignment.py --data ../shared/data/tno --out results/tno.json

Any folder with ir/ and vi/ images of the same names works (--data). The ground truth of the
MSRS test set (`flow/`) relates `ir_warp` to the dataset's aligned
infrared image `ir`, so it is only as good as the alignment of `ir` with `vi`. This registers
each aligned `ir` onto its `vi` with SimpleITK (Mattes mutual information, 48 bins, every pixel;
regular-step gradient descent; 1/2 then full resolution; started at the identity, i.e. at the
dataset's alignment), once with a translation and once with an affine transform, and reports
how far each moves the pair: the mean over a grid of pixels of |T(p) - p|, in pixels. A
different similarity and optimiser from this package's own (`benchmarks/registration.py
--drift` reports where `global` and `optimize` put the same pairs), so where both move the
pairs by a few pixels, the offset is the data's, not one method's bias. The control,
--synthetic: each infrared image replaced by `data.stress.synthetic_infrared` of its visible
image (seed = its index, as `benchmarks/registration.py --set msrs-synthetic`), aligned
exactly by construction but still of another modality: how far the tool moves a pair that
is aligned.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from superfusion_jax.data.stress import synthetic_infrared
from superfusion_jax.io.images import IMAGE_EXTENSIONS, read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "msrs_test"
GRID_STEP = 8  # pixels between the points the displacement is averaged over


def _sitk():
    try:
        import SimpleITK
    except ImportError as error:
        raise SystemExit("this benchmark needs SimpleITK: pip install SimpleITK") from error
    return SimpleITK


def grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W) float32 channel mean."""
    return np.asarray(rgb, np.float32).mean(axis=-1)


def drift_px(fixed: np.ndarray, moving: np.ndarray, model: str) -> tuple[float, list[float]]:
    """Register `moving` onto `fixed` (both (H, W)) from the identity with Mattes MI.

    model: 'translation' or 'affine'. Returns (mean |T(p) - p| over a GRID_STEP grid of the
    fixed frame, the mean displacement (x, y)), pixels.
    """
    sitk = _sitk()
    f, m = sitk.GetImageFromArray(fixed), sitk.GetImageFromArray(moving)
    if model == "translation":
        start = sitk.TranslationTransform(2)
    else:
        start = sitk.CenteredTransformInitializer(
            f, m, sitk.AffineTransform(2), sitk.CenteredTransformInitializerFilter.GEOMETRY
        )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=0.5, minStep=1e-4, numberOfIterations=400, relaxationFactor=0.7
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(start, inPlace=False)
    transform = method.Execute(f, m)
    h, w = fixed.shape
    rows, cols = np.mgrid[0:h:GRID_STEP, 0:w:GRID_STEP]
    points = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float64)
    moved = np.array([transform.TransformPoint(tuple(p)) for p in points])
    shift = moved - points
    return float(np.linalg.norm(shift, axis=1).mean()), shift.mean(axis=0).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="a folder with ir/ and vi/")
    parser.add_argument(
        "--synthetic", action="store_true", help="infrared replaced by synthetic_infrared(vi)"
    )
    parser.add_argument("--out", type=Path, help="also write every figure as JSON")
    args = parser.parse_args()
    folder = args.data / "vi"
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise SystemExit(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    results = {}
    for index, name in enumerate(names):
        vi = read_image(args.data / "vi" / name)
        if args.synthetic:
            ir = synthetic_infrared(vi, seed=index)
        else:
            ir = read_image(args.data / "ir" / name)
        vi, ir = grey(vi), grey(ir)
        results[name] = {}
        for model in ("translation", "affine"):
            drift, mean_shift = drift_px(vi, ir, model)
            results[name][model] = {"drift_px": drift, "mean_shift_px": mean_shift}
        t, a = results[name]["translation"], results[name]["affine"]
        print(
            f"{name}: translation {t['drift_px']:.2f} px (x {t['mean_shift_px'][0]:+.2f}, "
            f"y {t['mean_shift_px'][1]:+.2f}), affine {a['drift_px']:.2f} px",
            flush=True,
        )
    for model in ("translation", "affine"):
        drifts = [r[model]["drift_px"] for r in results.values()]
        print(
            f"{model}: mean {statistics.mean(drifts):.2f} px, median "
            f"{statistics.median(drifts):.2f}, pairs over 2 px: "
            f"{sum(d > 2 for d in drifts)} of {len(drifts)}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
