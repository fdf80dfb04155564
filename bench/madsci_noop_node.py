"""An unmodified MADSci 0.8.1 node for the workcell benchmark; run by the MADSci peer venv's python.

Usage: ``python madsci_noop_node.py PORT NAME``. ``home`` does nothing; ``hold`` sleeps ``seconds``. Written
only against ``madsci.node_module`` (no podium import), with MADSci's default settings (rate limiting on).
"""

import sys
import time

from madsci.common.types.node_types import RestNodeConfig
from madsci.node_module import RestNode, action


class NoopNode(RestNode):
    """Does nothing, as fast as MADSci's node SDK lets it."""

    @action
    def home(self) -> None:
        """Move to the home pose (instantly)."""

    @action
    def hold(self, seconds: float = 1.0) -> dict:
        """Hold for ``seconds``."""
        time.sleep(seconds)
        return {"held_s": seconds}


if __name__ == "__main__":
    port, name = int(sys.argv[1]), sys.argv[2]
    config = RestNodeConfig(
        node_url=f"http://127.0.0.1:{port}", node_name=name, enable_registry_resolution=False
    )
    NoopNode(node_config=config).start_node()
