"""`python -m superfusion_jax.weights MODEL [NAME]`: ship a training run's FusionNet as NAME."""

import argparse
import sys

from superfusion_jax.weights import DEFAULT, package

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m superfusion_jax.weights",
        description="Ship the FusionNet of a training run's model folder as superfusion_jax/"
        "weights/NAME.npz (docs/model_card.md).",
    )
    parser.add_argument("model", help="a training run's WORKDIR/model folder")
    parser.add_argument("name", nargs="?", default=DEFAULT, help=f"default: {DEFAULT}")
    args = parser.parse_args()
    try:
        print(package(args.model, args.name))
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"{args.model}: {error}")
