"""``python -m benchmarks`` is ``edge-medsam bench`` (the harness is ``edge_medsam.benchmark``); results live in
``benchmarks/results/<machine>/``."""
