"""Torch-free inference: bundle reading and verification, numpy preprocessing, backends, predictor, volumes.

Nothing in this package imports torch (a test proves it): it runs on `pip install edge-medsam[runtime]`.
"""
