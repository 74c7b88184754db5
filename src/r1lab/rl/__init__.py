"""Reinforcement learning: GRPO's loss as pure tensor functions (grpo.py), the update that applies
it (update.py, with the plain reference it is tested against in plain.py), one GRPO step from
rollout to record (step.py), the rule-based rewards (rewards.py) and the Bradley-Terry reward
model's scoring (reward_model.py).
"""
