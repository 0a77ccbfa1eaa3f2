"""A Ray cluster of several nodes on one machine, for the tests and benchmarks of the Ray back end:
a head that offers no CPU and worker nodes ``a``, ``b``… of one CPU each, every node a raylet of
its own (Ray's multi-node test utility, ``ray.cluster_utils.Cluster``). A search joins it by
``address``, as it joins a real cluster with ``--ray-address``; ``kill_raylet`` makes a node go
away as when its machine does."""

from __future__ import annotations

import os
import signal
from pathlib import Path

NODES = ("a", "b")
# A lost node is noticed in a few seconds (Ray's default is about half a minute).
HEALTH_CHECK = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


class LocalCluster:
    """The head and ``nodes`` worker nodes; worker nodes start in folders of their own under
    ``root``, not in the caller's."""

    def __init__(self, root: Path, nodes: tuple[str, ...] = NODES):
        from ray.cluster_utils import Cluster

        saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "OMP_NUM_THREADS")}
        os.environ.update(RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1")
        self._saved = saved
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "resources": {"automodel_head": 1},
                "include_dashboard": False,
                "_system_config": HEALTH_CHECK,
            },
        )
        self.nodes = {}
        here = os.getcwd()
        for name in nodes:
            folder = root / f"node-{name}"
            folder.mkdir()
            os.chdir(folder)
            try:
                self.nodes[name] = self.cluster.add_node(num_cpus=1, resources={f"automodel_node_{name}": 1})
            finally:
                os.chdir(here)
        self.cluster.wait_for_nodes(timeout=120)
        self.address = self.cluster.address

    def node_id(self, name: str) -> str:
        return self.nodes[name].node_id

    def kill_raylet(self, name: str) -> None:
        """SIGKILL the node's raylet, as when its machine goes away."""
        from ray._private import ray_constants

        for info in self.nodes[name].all_processes[ray_constants.PROCESS_TYPE_RAYLET]:
            info.process.send_signal(signal.SIGKILL)

    def shutdown(self) -> None:
        try:
            self.cluster.shutdown()
        finally:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
