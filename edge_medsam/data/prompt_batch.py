"""Pack per-object boxes and points into the fixed-width arrays a decoder takes (numpy; runtime and training)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_medsam.prompt_labels import BOX_LABELS, PAD_LABEL


def pack_prompts(boxes: Sequence[np.ndarray | None], points: Sequence[tuple[np.ndarray, np.ndarray] | None],
                 min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """N objects' optional box [4] and optional (coords [P, 2], labels [P]) → coords [N, W, 2], labels [N, W].

    A box becomes its two corners with labels 2 and 3 (SAM's convention); rows are padded with label -1.
    """
    if len(boxes) != len(points):
        raise ValueError("boxes and points must describe the same objects")
    rows = []
    for box, pts in zip(boxes, points, strict=True):
        coords = [np.zeros((0, 2), np.float32)]
        labels = [np.zeros(0, np.int64)]
        if pts is not None:
            coords.append(np.asarray(pts[0], np.float32).reshape(-1, 2))
            labels.append(np.asarray(pts[1], np.int64).reshape(-1))
        if box is not None:
            coords.append(np.asarray(box, np.float32).reshape(2, 2))
            labels.append(np.array(BOX_LABELS, np.int64))
        rows.append((np.concatenate(coords), np.concatenate(labels)))
    width = max([min_width, *(len(lab) for _, lab in rows)])
    out_coords = np.zeros((len(rows), width, 2), np.float32)
    out_labels = np.full((len(rows), width), PAD_LABEL, np.int64)
    for i, (c, lab) in enumerate(rows):
        out_coords[i, : len(lab)] = c
        out_labels[i, : len(lab)] = lab
    return out_coords, out_labels
