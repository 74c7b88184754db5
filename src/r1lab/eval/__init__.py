"""Measuring models as DeepSeek-R1 §5 does: pass@1 over k samples, unbiased pass@k and cons@k
(metrics.py), benchmark presets and files (benchmarks.py), and the R1-Zero run report (report.py).
"""
