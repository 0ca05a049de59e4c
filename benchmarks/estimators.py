"""Thin wrapper: ``python benchmarks/estimators.py ...`` == ``python -m gumbel_ac.lab ...``.

The estimator lab (bias, variance and MSE of every discrete gradient estimator against the
exact gradient) lives in :mod:`gumbel_ac.lab`; see ``--help``.
"""

from __future__ import annotations

from gumbel_ac.lab import main

if __name__ == "__main__":
    raise SystemExit(main())
