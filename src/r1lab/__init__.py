"""r1lab: the DeepSeek-R1 training recipe, small enough to read and to run on a laptop CPU."""

__version__ = "0.1.0"
