"""Size and compute of a reference at its native size: parameters and MACs of each graph (torch's FlopCounterMode)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from edge_medsam.models.reference.graphs import PROMPT_NAMES, reference_graphs
from edge_medsam.models.reference.registry import build_reference


def count_gmacs(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """Multiply-accumulates of one forward pass, in 10^9 (FlopCounterMode counts a MAC as 2 FLOPs)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return counter.get_total_flops() / 2e9


def one_box(image_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """One object prompted by a box, as its two corners (labels 2 and 3): coords [1, 2, 2], labels [1, 2]."""
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.75]]]) * image_size
    return coords.to(device), torch.tensor([[2.0, 3.0]]).to(device)


def reference_summary(name: str, **overrides: Any) -> dict[str, Any]:
    """Parameters and GMACs of a reference at its native size (or ``overrides``), computed on the meta device.

    ``encoder_params``: the image encoder; ``decoder_params``: the rest (prompt encoder, mask decoder and
    ESP-MedSAM's SPPG). ``encoder_gmacs``: one image; ``decoder_gmacs``: one object prompted by one box.
    """
    with torch.device("meta"):
        model = build_reference(name, **overrides)
    encoder, encoder_inputs, decoder, decoder_inputs = reference_graphs(model)
    decoder_inputs = (*decoder_inputs[: -len(PROMPT_NAMES)], *one_box(model.image_size, "meta"))
    encoder_params = sum(p.numel() for p in model.image_encoder.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {
        "name": model.name,
        "image_size": model.image_size,
        "params": total,
        "encoder_params": encoder_params,
        "decoder_params": total - encoder_params,
        "encoder_gmacs": count_gmacs(encoder, encoder_inputs),
        "decoder_gmacs": count_gmacs(decoder, decoder_inputs),
    }
