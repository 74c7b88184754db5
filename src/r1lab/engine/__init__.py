"""Generation: the `Sampler` interface and the Hugging Face backend (sampler.py), its fast decode
step over r1lab's own caches (static_cache.py), the one place a transformers model runs over a
transformers cache (hf.py), the C kernels (kernels.py, decode_attention.c) and the fused training
ops built on them (fused.py), and the colocated vLLM backend (vllm.py).
"""
