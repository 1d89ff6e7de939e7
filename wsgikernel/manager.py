"""``wsgikernel.manager``: where the control layer's entry point has always been imported from.

The code lives in ``wsgikernel/control/`` (see ``control/environments.py``);
this module re-exports the names its callers use.
"""

from .control.environments import EnvironmentManager
from .control.link import ALIVE_STATES

__all__ = ["EnvironmentManager", "ALIVE_STATES"]
