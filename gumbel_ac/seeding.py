"""Derived seeds: one integer seed from several integers, the same on every machine and run.

A run needs seeds beyond the user's ``--seed``: the numpy env re-seeded when a run resumes at
step ``t``, the other ranks under torchrun, ... Each must be a pure function of its inputs (so
a resumed or repeated run draws the same numbers) and seeds of different inputs must not be
correlated. ``seed + step`` or ``seed * 1000 + rank`` fail the second requirement (seed 0 at
step 1 equals seed 1 at step 0); numpy's ``SeedSequence`` hashes its entropy words so nearby
inputs give unrelated outputs (NumPy, "Parallel random number generation", SeedSequence).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

#: Derived seeds lie in ``[0, SEED_BOUND)``: numpy's legacy seeding (``np.random.seed``, Gymnasium's
#: ``reset(seed=...)`` on some envs) accepts at most 32 bits, and ``torch.manual_seed`` any of them.
SEED_BOUND = 2**32


def derive_seed(*parts: int) -> int:
    """A seed in ``[0, 2**32)`` that depends only on ``parts`` (and their order).

    ``derive_seed(seed, step)`` is the env seed of a run resumed at ``step``;
    ``derive_seed(seed, rank, step)`` that of rank ``rank`` under torchrun. Each part is taken
    modulo ``2**63`` (SeedSequence only takes non-negative entropy; a negative user seed thus
    maps to ``seed + 2**63``), so the first 32-bit word of ``SeedSequence(parts)`` is exactly
    what the resume and distributed code computed before this function existed: checkpoints
    written then resume to the same numbers.

    Trailing zero parts do not change the result (SeedSequence zero-pads its entropy pool, so
    ``derive_seed(s) == derive_seed(s, 0) == derive_seed(s, 0, 0)``). Two uses whose part
    lists differ in length can therefore collide; give each use a fixed length, or a distinct
    non-zero leading tag, when that matters.

    Raises:
        TypeError: a part is not an integer (a float seed would be silently truncated).
        ValueError: no parts (a constant is not a derived seed).
    """
    if not parts:
        raise ValueError("derive_seed needs at least one integer")
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, Integral):
            raise TypeError(f"derive_seed takes integers, got {part!r} ({type(part).__name__})")
    entropy = [int(part) % 2**63 for part in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])
