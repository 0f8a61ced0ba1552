"""Learned agents: per-candidate scoring encoders (torch-geometric), their SB3 integration, and
the registered ``gnn`` policy that loads shipped checkpoints.

Importing this package does not import torch; the submodules that need it do
(:mod:`schedgym.agents.encoders`, :mod:`schedgym.agents.sb3`, :mod:`schedgym.agents.checkpoint`).
"""
