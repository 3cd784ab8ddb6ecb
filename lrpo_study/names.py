"""Names the command line offers before anything heavy is imported (importing torch takes seconds,
so ``--help`` and a mistyped argument answer at once)."""

from __future__ import annotations

METHODS = ("fixed", "cosine", "onecycle", "lrpo", "greedylr", "curvature", "wsd", "pbt")
SAMPLERS = ("tpe", "nsgaii", "random", "gp")
