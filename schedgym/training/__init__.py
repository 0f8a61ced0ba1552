"""Training of the agents: MaskablePPO (sb3-contrib) with the per-candidate scoring policies of
:mod:`schedgym.agents`, an optional behaviour-cloning warm start from a heuristic, periodic
validation, best/last checkpoints and resume. Imports torch (in its submodules)."""
