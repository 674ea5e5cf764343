"""Simulated prompt objects of a batch of label maps, packed for a decoder (shared by teacher and student tasks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edge_medsam.data.prompt_batch import pack_prompts
from edge_medsam.data.prompts import simulate_prompts

PromptObjects = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def simulate_batch(label_maps: np.ndarray, rng: np.random.Generator, device: torch.device | str = "cpu",
                   **simulate: Any) -> PromptObjects | None:
    """(image_index [N], coords [N,P,2], labels [N,P], targets [N,H,W]) for every simulated object, or None.

    ``simulate`` goes to ``simulate_prompts``; a callable value is called with the rng once per image (for
    per-image random settings such as SAM-Med2D's point count).
    """
    index, boxes, points, targets = [], [], [], []
    for b, label_map in enumerate(label_maps):
        kwargs = {k: (v(rng) if callable(v) else v) for k, v in simulate.items()}
        for obj in simulate_prompts(label_map, rng, **kwargs):
            index.append(b)
            boxes.append(obj.box)
            points.append((obj.coords, obj.point_labels) if len(obj.point_labels) else None)
            targets.append(obj.target)
    if not index:
        return None
    coords, labels = pack_prompts(boxes, points)
    return (torch.tensor(index, device=device), torch.from_numpy(coords).to(device),
            torch.from_numpy(labels).to(device), torch.from_numpy(np.stack(targets).astype(np.float32)).to(device))
