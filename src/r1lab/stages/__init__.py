"""One module per `r1lab` command, each read top to bottom: docstring, config, set-up, one flat
loop. `chain.py` is the only door between them: `pipeline` and `distill` run the other stages
through it, and no stage imports another.
"""
