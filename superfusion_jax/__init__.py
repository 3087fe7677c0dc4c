"""SuperFusion in JAX/Flax: infrared-to-visible registration and fusion with semantic awareness."""

__version__ = "0.1.0"
