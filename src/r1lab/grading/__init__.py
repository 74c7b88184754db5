"""How an answer is judged: final-answer extraction and mathematical equivalence (extract.py,
verify.py, with the symbolic comparison in a killable child, verify_worker.py), the code sandbox
(sandbox.py; inside it sandbox_child.py, the warden, sandbox_judge.py, sandbox_program.py,
sandbox_wire.py, the channel between those two, and sandbox_root.py, the minimal filesystem) and the language measure (language.py). Nothing here knows about
models; it imports only `r1lab.errors`.
"""
