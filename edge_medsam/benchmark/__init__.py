"""The latency / size / accuracy benchmark harness, with the public anchors side by side.

``python -m benchmarks [--quick]`` (or ``edge-medsam bench``) measures our students (bundles, presets or
model files) and the anchors of ``edge_medsam.models.reference`` on every installed backend, precision,
thread count and batch, and writes JSON, CSV, a Markdown report and plots into ``benchmarks/results/<machine>/``.
Modules, one job each: ``machine`` (CPU, flags, peak FP32), ``timing`` (warm-up, interleaved rounds,
percentiles), ``macs`` (MACs from ONNX graphs), ``subjects`` (what is compared, and its export), ``prompts``
(decoder feeds), ``engines`` (backends), ``scenarios`` (2D, prompts, 3D CT), ``coldstart`` (new process → first
mask), ``accuracy`` (Dice per precision), ``compare`` (ratios, targets), ``report`` (files), ``settings`` and
``run`` (one run, start to end).
"""
