"""schedgym: a Gymnasium suite of real systems-scheduling problems.

``import schedgym`` registers every environment (``schedgym/SoCDAG-v0``, ...) with Gymnasium.
"""

from schedgym.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "register_envs"]
