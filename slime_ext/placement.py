"""Ray placement: one placement group for the whole run, and which bundles the trainer ranks and engines use.

GPU runs: one bundle {"GPU": 1, "CPU": c} per GPU. A probe actor in each bundle reports (node IP, GPU index) and
bundles are ordered by them, so "logical GPU i" is stable across nodes. Trainer rank i uses bundle i; engines
start at bundle 0 when colocated (sharing the trainer's GPUs: trainer actors ask for 0.4 GPU, engine hosts 0.2)
and after the trainer's bundles otherwise.

CPU runs: every actor lives inside a bundle with a fractional CPU. A placement group holding all CPUs starves
actors outside it (they wait forever), so nothing is created outside, and every ``ray.get`` has a timeout.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

log = logging.getLogger("longtrace.train")
READY_TIMEOUT_S = 600.0


@ray.remote
class _Probe:
    def where(self) -> tuple[str, int | None]:
        ids = ray.get_gpu_ids()
        return ray.util.get_node_ip_address(), (int(ids[0]) if ids else None)


@dataclass
class Placement:
    pg: object
    bundles: list[int]  # bundle indices in logical order
    gpus: list[int | None]  # GPU index on its node, per logical bundle
    ips: list[str]
    gpu: bool
    actor_bundles: list[int]
    engine_bundles: list[int]  # first bundle of each engine
    engine_gpus: list[int | None]

    def strategy(self, logical: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=self.bundles[logical])

    def remove(self) -> None:
        remove_placement_group(self.pg)


def create_placement(actor_ranks: int, num_engines: int, gpus_per_engine: int, colocate: bool, gpu: bool,
                     cpus_per_bundle: float = 1.0) -> Placement:
    """The run's placement group and the bundle of every trainer rank and engine."""
    engine_gpus_total = num_engines * gpus_per_engine if gpu else num_engines
    if gpu:
        n = max(actor_ranks, engine_gpus_total) if colocate else actor_ranks + engine_gpus_total
        bundles = [{"GPU": 1, "CPU": cpus_per_bundle} for _ in range(n)]
    else:  # CPU: trainer ranks and engines share bundles (rollout and training alternate)
        n = max(actor_ranks, num_engines)
        bundles = [{"CPU": cpus_per_bundle} for _ in range(n)]
    pg = placement_group(bundles, strategy="PACK")
    ray.get(pg.ready(), timeout=READY_TIMEOUT_S)
    probes = [_Probe.options(num_cpus=0.01, num_gpus=0.01 if gpu else 0,
                             scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)).remote()
              for i in range(n)]
    where = ray.get([p.where.remote() for p in probes], timeout=READY_TIMEOUT_S)
    for p in probes:
        ray.kill(p)
    order = sorted(range(n), key=lambda i: (_ip_key(where[i][0]), where[i][1] if where[i][1] is not None else i))
    ips = [where[i][0] for i in order]
    gpus = [where[i][1] for i in order]
    actor = list(range(actor_ranks))
    first = 0 if (colocate or not gpu) else actor_ranks
    step = gpus_per_engine if gpu else 1
    engines = [first + k * step for k in range(num_engines)]
    for k, b in enumerate(engines):  # an engine spanning several GPUs must stay on one node
        if gpu and len(set(ips[b:b + step])) != 1:
            raise ValueError(f"engine {k} would span nodes (bundles {b}..{b + step - 1}); make GPUs per engine divide GPUs per node")
    placement = Placement(pg, order, gpus, ips, gpu, actor, engines, [gpus[b] for b in engines])
    log.info("placement: %d bundle(s) on %d node(s); trainer bundles %s, engine bundles %s", n, len(set(ips)), actor, engines)
    return placement


def _ip_key(ip: str) -> tuple:
    try:
        return tuple(int(x) for x in socket.inet_aton(ip))
    except OSError:
        return (ip,)
