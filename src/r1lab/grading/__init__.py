"""How an answer is judged: final-answer extraction and mathematical equivalence (extract.py,
verify.py, with the symbolic comparison in a killable child, verify_worker.py), the code sandbox
(sandbox.py, sandbox_child.py) and the language measure (language.py). Nothing here knows about
models; it imports only `r1lab.errors`.
"""
