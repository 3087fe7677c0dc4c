"""Training-free registration on real misaligned pairs: accuracy and seconds per pair.

    python benchmarks/registration.py                         # the 20 MSRS test pairs
    python benchmarks/registration.py --set msrs-synthetic    # the same, synthetic infrared
    python benchmarks/registration.py --set stress            # the stress set (RoadScene, TNO)
    python benchmarks/registration.py --set stress-synthetic  # the same, synthetic infrared
    python benchmarks/registration.py --methods global --drift --out results/registration.json
    python benchmarks/registration.py --set msrs-synthetic --methods global,global+network \
        --checkpoint runs/residual/model                      # a trained DenseMatcher

msrs: ../shared/data/msrs_test (ir_warp onto vi against flow/). msrs-synthetic: the same visible
images and ground-truth fields, the infrared replaced by `data.stress.synthetic_infrared` of the
visible image (seed = its index) warped by the field: the two images agree exactly where the
real pairs' cameras do not (parallax, a ~1 % horizontal scale), so it measures the method's own
error. stress: `--pairs` aligned pairs
from ../shared/data/roadscene_train and ../shared/data/tno (alternating, sorted by name), centre
crops of 240 x 320, each misaligned with `data.stress.StressMisalignment` (seed = its index).
stress-synthetic: the same crops and misalignments, the infrared synthetic as in msrs-synthetic
(the TNO pairs' own alignment is off by 5-9 px on several pairs: docs/registration.md).
Beside each method, the identity (no registration) and the least-squares affine fit of the
ground truth (the floor of any global-only method). Metrics as evaluate.py computes them:
EPE mean over all pixels and over the covered pixels (those that are some pixel's source),
median, % under 1/3/5 px, folded pixels %; seconds per pair after compilation (median);
for the training-free methods, how many pairs the search reported uncertain (its best match's
prominence under `min_prominence`; the JSON has each pair's prominence).
--drift adds, per method, how far it moves the ALIGNED pair (ir onto vi; mean px): where the
method finds the two images' content agreeing, against the dataset's alignment (0 px); and the
content EPE: the covered EPE against the ground truth moved by that (`content_epe`): whether the
misaligned pair is registered to the same correspondence as the aligned one.
'network' and 'global+network' (the DenseMatcher alone, or behind the global stage) run the
DenseMatcher of --checkpoint through `inference.Pipeline`, as `superfusion register` does.
Prints a Markdown table; --out also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax import huge_pages
from superfusion_jax.data.stress import (
    StressMisalignment,
    make_pair,
    synthetic_infrared,
    warp_image,
)
from superfusion_jax.evaluation import registration_metrics as rm
from superfusion_jax.inference import NETWORK_REGISTRATIONS, Pipeline
from superfusion_jax.io.ground_truth import read_flow_mat
from superfusion_jax.io.images import read_image
from superfusion_jax.registration import geometry, methods

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLUMNS = (
    "epe_mean_px",
    "epe_mean_covered_px",
    "epe_median_px",
    "epe_under_1px_pct",
    "epe_under_3px_pct",
    "epe_under_5px_pct",
    "folding_pct",
)


def msrs_pairs() -> list[dict]:
    root = DATA / "msrs_test"
    pairs = []
    for path in sorted((root / "vi").glob("*.png")):
        pairs.append(
            {
                "name": path.stem,
                "vi": read_image(path),
                "ir": read_image(root / "ir" / path.name),
                "ir_warp": read_image(root / "ir_warp" / path.name),
                "source_px": read_flow_mat(root / "flow" / f"{path.name}.mat"),
            }
        )
    return pairs


def msrs_synthetic_pairs() -> list[dict]:
    pairs = []
    for index, pair in enumerate(msrs_pairs()):
        ir = synthetic_infrared(pair["vi"], seed=index)
        pair.update(ir=ir, ir_warp=warp_image(ir, pair["source_px"]))
        pairs.append(pair)
    return pairs


def _centre_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max(size[0] / h, size[1] / w, 1.0)
    if scale > 1.0:
        shape = (int(np.ceil(h * scale)), int(np.ceil(w * scale)), image.shape[2])
        image = np.asarray(jax.image.resize(image, shape, "linear"))
        h, w = image.shape[:2]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return image[top : top + size[0], left : left + size[1]]


def stress_pairs(count: int, size=(240, 320), synthetic: bool = False) -> list[dict]:
    """The stress set; `synthetic`: each pair's infrared replaced by `synthetic_infrared` of its
    visible crop (seed = its index) before the misalignment, as msrs-synthetic does."""
    sources = [sorted((DATA / d / "vi").iterdir()) for d in ("roadscene_train", "tno")]
    pairs = []
    for index in range(count):
        vi_path = sources[index % 2][index // 2]
        if vi_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        vi = _centre_crop(read_image(vi_path), size)
        ir = _centre_crop(read_image(vi_path.parent.parent / "ir" / vi_path.name), size)
        if synthetic:
            ir = synthetic_infrared(vi, seed=index)
        ir_warp, source = make_pair(jax.random.key(index), ir, StressMisalignment())
        name = f"{vi_path.parent.parent.name}/{vi_path.stem}"
        pairs.append({"name": name, "vi": vi, "ir": ir, "ir_warp": ir_warp, "source_px": source})
    return pairs


def affine_floor(source_px: np.ndarray) -> np.ndarray:
    """Positions of the least-squares affine fit of the ground truth's inverse (pixels)."""
    h, w = source_px.shape[:2]
    q = np.asarray(geometry.level_points((h, w), (h, w))).reshape(-1, 2).astype(np.float64)
    p = source_px.reshape(-1, 2).astype(np.float64)
    inside = (p[:, 0] >= -0.5) & (p[:, 0] <= w - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= h - 0.5)
    design = np.concatenate([p[inside], np.ones((inside.sum(), 1))], 1)
    coefficients, *_ = np.linalg.lstsq(design, q[inside], rcond=None)
    grid = np.concatenate([q, np.ones((q.shape[0], 1))], 1)  # positions p of the output frame
    return (grid @ coefficients).reshape(h, w, 2).astype(np.float32)


def score(positions: np.ndarray, pair: dict) -> dict[str, float]:
    registered = np.asarray(
        geometry.sample(jnp.asarray(pair["ir_warp"]), jnp.asarray(positions), positions.shape[:2])
    )
    out = rm.score_registration(
        jnp.asarray(positions)[None],
        jnp.asarray(pair["source_px"])[None],
        jnp.asarray(registered)[None],
        jnp.asarray(pair["ir"])[None],
    )
    return {k: float(v[0]) for k, v in out.items() if k in COLUMNS}


def aligned_drift(positions: np.ndarray) -> float:
    """Mean distance (px) of sampling positions (H, W, 2) from the identity."""
    identity = np.asarray(geometry.level_points(positions.shape[:2], positions.shape[:2]))
    return float(np.mean(np.linalg.norm(positions - identity, axis=-1)))


def content_epe(positions: np.ndarray, aligned: np.ndarray, source_px: np.ndarray) -> float:
    """EPE |src(g(p)) - a(p)| (mean px over the covered pixels, as epe_mean_covered_px) of
    positions g (H, W, 2) against the positions a the same method finds on the ALIGNED pair
    (where it puts each visible pixel's infrared content) instead of the identity p: whether
    the misaligned pair is registered to the same correspondence as the aligned one, so that a
    dataset's own misalignment of ir and vi does not count against the method."""
    composed = geometry.sample(jnp.asarray(source_px), jnp.asarray(positions), positions.shape[:2])
    distance = np.linalg.norm(np.asarray(composed) - aligned, axis=-1)
    covered = np.asarray(rm.covered_pixels(jnp.asarray(source_px)[None])[0]) > 0
    return float(distance[covered].mean())


def network_positions(pipeline: Pipeline, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Sampling positions (H, W, 2), pixels, of a network registration of ir (H, W, 3) onto vi."""
    disp = jnp.asarray(pipeline.register(ir[None], vi[None])["disp"])
    return np.asarray(rm.sampling_positions(disp, pipeline.variant.align_corners_base_grid)[0])


def run_method(
    method: str, pairs: list[dict], drift: bool, checkpoint: Path | None
) -> tuple[list[dict], list[float]]:
    rows, seconds = [], []
    if method in NETWORK_REGISTRATIONS:
        if checkpoint is None:
            raise SystemExit(f"method {method!r} needs --checkpoint (a trained DenseMatcher)")
        pipeline = Pipeline.from_checkpoint(checkpoint, registration=method)
        register = lambda ir, vi: network_positions(pipeline, ir, vi)
    elif method in methods.METHODS:
        settings = methods.settings_for(method)
        searches = []

        def register(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
            found = methods.register(ir[None], vi[None], settings)
            searches.append(
                {
                    "prominence": float(found["prominence"][0]),
                    "uncertain": not bool(found["confident"][0]),
                }
            )
            return np.asarray(found["positions"][0])

    else:
        register, searches = None, []
    for pair in pairs:
        h, w = pair["vi"].shape[:2]
        start = time.perf_counter()
        if method == "identity":
            positions = np.asarray(geometry.level_points((h, w), (h, w)))
        elif method == "affine floor":
            positions = affine_floor(pair["source_px"])
        else:
            positions = register(pair["ir_warp"], pair["vi"])
            seconds.append(time.perf_counter() - start)
        rows.append(score(positions, pair))
        if searches:
            rows[-1].update(searches[-1])  # the misaligned pair's search
        if drift and register is not None:
            aligned = register(pair["ir"], pair["vi"])
            rows[-1]["aligned_drift_px"] = aligned_drift(aligned)
            rows[-1]["content_epe_px"] = content_epe(positions, aligned, pair["source_px"])
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set", choices=("msrs", "msrs-synthetic", "stress", "stress-synthetic"), default="msrs"
    )
    parser.add_argument("--pairs", type=int, default=20, help="stress set: number of pairs")
    parser.add_argument("--methods", default="identity,affine floor,global,optimize")
    parser.add_argument("--drift", action="store_true", help="also register the aligned pairs")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--checkpoint", type=Path, help="the DenseMatcher of 'network' and 'global+network'"
    )
    args = parser.parse_args()

    sets = {
        "msrs": msrs_pairs,
        "msrs-synthetic": msrs_synthetic_pairs,
        "stress": lambda: stress_pairs(args.pairs),
        "stress-synthetic": lambda: stress_pairs(args.pairs, synthetic=True),
    }
    pairs = sets[args.set]()
    print(f"{len(pairs)} pairs ({args.set}), device {jax.devices()[0].device_kind}")
    columns = (*COLUMNS, "aligned_drift_px", "content_epe_px") if args.drift else COLUMNS
    header = ["method", *columns, "worst pair EPE", "uncertain", "s/pair (first)"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    results = {}
    for method in args.methods.split(","):
        rows, seconds = run_method(method, pairs, args.drift, args.checkpoint)
        values = {k: [r[k] for r in rows if k in r] for k in columns}
        mean = {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()}
        worst = max(r["epe_mean_px"] for r in rows)
        uncertain = str(sum(r["uncertain"] for r in rows)) if "uncertain" in rows[0] else "-"
        timing = (
            f"{statistics.median(seconds[1:] or seconds):.2f} ({seconds[0]:.1f})"
            if seconds
            else "-"
        )
        cells = [f"{mean[k]:.2f}" if np.isfinite(mean[k]) else "-" for k in columns]
        row = [method, *cells, f"{worst:.2f}", uncertain, timing]
        print("| " + " | ".join(row) + " |", flush=True)
        results[method] = {
            "mean": mean,
            "per_pair": {p["name"]: r for p, r in zip(pairs, rows, strict=True)},
            "seconds": seconds,
        }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    huge_pages.restart_with_huge_pages()  # as the command-line programs run
    main()
