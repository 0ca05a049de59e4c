"""Tiny numpy rasterizers for ``render_mode="rgb_array"``.

Why not pygame: rendering must work headless and without optional dependencies (eval.py
writes GIFs on servers). Images are ``HxWx3`` uint8 arrays; coordinates are in pixels with
``(x, y) = (column, row)``.
"""

from __future__ import annotations

import numpy as np


def fill_convex_polygon(img: np.ndarray, pts: np.ndarray, color: tuple[int, int, int]) -> None:
    """Fill the convex polygon with vertices ``pts`` (``[V, 2]`` as ``(x, y)``) in place.

    A pixel centre is inside when it lies on the same side of every edge (half-plane test),
    evaluated only over the polygon's bounding box.
    """
    h, w = img.shape[:2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x0 > x1 or y0 > y1:
        return
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    px, py = xs + 0.5, ys + 0.5
    nxt = np.roll(pts, -1, axis=0)
    cross = [(b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]) for a, b in zip(pts, nxt, strict=True)]
    stacked = np.stack(cross)
    inside = np.all(stacked >= 0, axis=0) | np.all(stacked <= 0, axis=0)
    img[y0 : y1 + 1, x0 : x1 + 1][inside] = color


def fill_circle(img: np.ndarray, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
    """Fill the disc of radius ``r`` centred at ``(cx, cy)`` in place."""
    h, w = img.shape[:2]
    y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 1, h - 1)
    x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 1, w - 1)
    if x0 > x1 or y0 > y1:
        return
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= r * r
    img[y0 : y1 + 1, x0 : x1 + 1][inside] = color


def grid_image(grid: np.ndarray, cell: int = 32, on: tuple[int, int, int] = (40, 40, 40)) -> np.ndarray:
    """Upscale a 2-D 0/1 grid to an image: white background, ``on`` cells, grey grid lines."""
    rows, cols = grid.shape
    img = np.full((rows * cell, cols * cell, 3), 255, dtype=np.uint8)
    mask = np.kron(grid > 0.5, np.ones((cell, cell), dtype=bool))
    img[mask] = on
    img[::cell, :, :] = 200
    img[:, ::cell, :] = 200
    return img
