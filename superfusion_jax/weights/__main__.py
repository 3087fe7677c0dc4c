"""`python -m superfusion_jax.weights MODEL [NAME]`: ship a training run's FusionNet as NAME."""

import sys

from superfusion_jax.weights import DEFAULT, package

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m superfusion_jax.weights RUN/model [NAME]")
    print(package(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else DEFAULT))
