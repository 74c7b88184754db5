"""What every run needs, whatever it trains: typed configs (config.py), reading data files and
writing files atomically (files.py), loading models and tokenizers from a directory or hub id
(loading.py), checkpoints and run directories (checkpoint.py, run.py), the metrics log
(runlog.py), devices and dtypes (device.py), process groups (distributed.py), the
non-finite-step guard (guard.py) and LoRA adapters (lora.py). It imports only `r1lab.errors`.
"""
