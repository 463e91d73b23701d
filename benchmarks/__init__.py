"""Benchmarks of the project, run as scripts from any directory (not part of the installed package):

    python benchmarks/bench.py [--quick]          throughput and scale ratios, measured side by side
    python benchmarks/extract_bench.py [VIDEO...]  landmark extraction against bare MediaPipe
    python benchmarks/signers.py                   unseen-signer WER on real Kaggle landmarks
"""
