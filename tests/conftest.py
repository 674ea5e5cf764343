"""Shared test settings: one torch thread (2-core CI machines run faster without thread contention)."""

import contextlib

with contextlib.suppress(ImportError):
    import torch

    torch.set_num_threads(1)
