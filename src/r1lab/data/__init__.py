"""Training data around the tasks: the prompt templates and their resolver (prompting.py), which
problems a stage draws (problems.py), the cold-start chains of thought (coldstart.py), preference
pairs for the reward model (preferences.py) and rejection sampling's filters (rejection.py).
"""
