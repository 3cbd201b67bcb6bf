"""Image-to-dataset and dataset-to-dataset distances (method.md, equation sets 6-7).

D(S, P)[j, k] = ||s_j - p_k||_2 is never held whole: rows of S are taken in chunks sized
from a memory budget, each chunk's block of D is computed with one matrix product
(||s||^2 + ||p||^2 - 2 s.p, clamped at 0) into a reused float64 buffer, and only its row
sums are kept. Memory is O(chunk x n) whatever m is.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_CHUNK_BYTES = 8 * 2**20  # a block that stays near the CPU caches: fastest here


def chunk_rows(n: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows of S per chunk so that one float64 chunk x n block fits in `chunk_bytes`."""
    return max(1, chunk_bytes // (8 * max(n, 1)))


def image_to_dataset_distances(
    secondary: np.ndarray, primary: np.ndarray, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> np.ndarray:
    """I_dist: for each row s_j of S (m x z), the sum over P (n x z) of ||s_j - p_k||_2.

    Returns an (m,) float64 array. Accumulated in float64 regardless of the input dtype.
    """
    s = torch.as_tensor(np.asarray(secondary, dtype=np.float64))
    p = torch.as_tensor(np.asarray(primary, dtype=np.float64))
    if s.ndim != 2 or p.ndim != 2:
        raise ValueError("S and P must be 2-D (images x components)")
    if s.shape[1] != p.shape[1]:
        raise ValueError(f"dimensions differ: S has {s.shape[1]}, P has {p.shape[1]}")
    m, n = s.shape[0], p.shape[0]
    if n == 0:
        raise ValueError("the primary set P is empty")
    out = torch.empty(m, dtype=torch.float64)
    if m == 0:
        return out.numpy()
    p_sq = (p * p).sum(dim=1)
    s_sq = (s * s).sum(dim=1)
    p_t = p.T.contiguous()
    rows = min(m, chunk_rows(n, chunk_bytes))
    block = torch.empty((rows, n), dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, m, rows):
            stop = min(start + rows, m)
            d = block[: stop - start]
            torch.addmm(p_sq.unsqueeze(0), s[start:stop], p_t, beta=1.0, alpha=-2.0, out=d)
            d.add_(s_sq[start:stop].unsqueeze(1)).clamp_(min=0.0).sqrt_()
            torch.sum(d, dim=1, out=out[start:stop])
    return out.numpy()


def dataset_distance(i_dist: np.ndarray) -> float:
    """O_dist: the mean of I_dist over the images of S."""
    i_dist = np.asarray(i_dist, dtype=np.float64)
    if i_dist.size == 0:
        raise ValueError("O_dist of an empty set is undefined")
    return float(i_dist.mean())


def scaled_dataset_distances(o_dists: dict[str, float]) -> dict[str, float]:
    """Each O_dist divided by their sum over the sets compared (the paper's table 2)."""
    total = sum(o_dists.values())
    if total <= 0:
        return {name: 0.0 for name in o_dists}
    return {name: value / total for name, value in o_dists.items()}
