"""r1lab's own tiny model: the DeepSeek-V3 architecture and the dense students (architecture.py),
the byte-level BPE tokenizer (tokenizer.py), the synthetic pretraining corpus (corpus.py), and the
built-in base model pretrained from them and cached (base.py).
"""
