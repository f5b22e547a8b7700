"""``longtrace train`` (= ``python -m slime_ext.train``): GRPO with a Megatron-core trainer and rollout engines.

One rollout step, as in slime:

    rollout (groups, scored as they finish) -> GRPO advantages -> reference / old log-probs when needed
    -> optimiser step(s) -> weight sync to the engines -> log -> periodic save and eval

Everything runs under Ray: one placement group; the trainer ranks as actors (train_actor.py); a rollout manager
actor owning the engines behind sglang-router, the prompt data and the reward (rollout_manager.py). On a CPU
machine the same code runs with gloo, SGLang's CPU backend (or the torch fallback engine) and fractional-CPU bundles.
Flags: arguments.py.

Colocated (``--colocate``: engines and trainer share the GPUs), memory changes hands in slime's order, so that the
weights are never read while offloaded and both sides never hold everything at once (``Colocation``):

    start:  engines up -> engines release all memory -> trainer builds -> [resume engine weights -> sync -> trainer
            offload -> resume engine KV cache]
    step:   rollout -> engines release all -> trainer onload -> train (+ save) -> [the same bracket]
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import ray

from .arguments import loss_config, parse_args, resolved_config
from .checkpoint import latest_checkpoint
from .data_source import rollouts_for_epochs
from .loss import grpo_advantages
from .megatron_model import ParallelConfig
from .packing import TrainItem
from .placement import create_placement
from .rollout_manager import RolloutManager, placement_info
from .sample import Sample
from .tracking import Tracker
from .train_actor import TrainerGroup
from .trainer import OptimConfig, TrainerConfig
from .weight_sync import MEMORY_TAGS, WeightSyncConfig, WeightSyncError

log = logging.getLogger("longtrace.train")


class Colocation:
    """Who holds the (shared) device memory when, with ``--colocate``; without it only the weight sync remains.
    ``phases`` records the hand-over steps in the order they ran (logged, and checked by the tests)."""

    def __init__(self, colocate: bool, trainer: TrainerGroup, rollout, get, sync_retries: int = 0):
        self.on, self.trainer, self.rollout, self.get, self.sync_retries = colocate, trainer, rollout, get, sync_retries
        self.phases: list[str] = []

    def _do(self, phase: str, fn, *args):
        self.phases.append(phase)
        return fn(*args)

    def release_engines(self) -> None:
        """After a rollout (and at start-up): the engines pause, get idle and free all their memory."""
        if self.on:
            self._do("engines release all", lambda: self.get(self.rollout.sleep.remote(list(MEMORY_TAGS))))

    def onload_trainer(self) -> None:
        if self.on:
            self._do("trainer onload", self.trainer.call, "wake")

    def sync_weights(self) -> dict[str, float]:
        """The new weights to the engines. Colocated: engine weights back -> sync (the trainer still resident) ->
        trainer offload -> engine KV cache back, generation continues. A refused sync is retried ``sync_retries``
        times, then the WeightSyncError (naming the engine) stops the run."""
        if self.on:
            self._do("engines resume weights", lambda: self.get(self.rollout.wake.remote(["weights"], False)))
        urls = self.get(self.rollout.engine_urls.remote())
        for attempt in range(self.sync_retries + 1):
            try:
                out = self._do("weight sync", self.trainer.call, "sync_weights", urls, self.on)
                break
            except WeightSyncError as e:
                if attempt == self.sync_retries:
                    raise
                log.warning("weight sync failed (attempt %d of %d), retrying: %s", attempt + 1, self.sync_retries + 1, e)
        if self.on:
            self._do("trainer offload", self.trainer.call, "sleep")
            rest = [t for t in MEMORY_TAGS if t != "weights"]
            self._do("engines resume kv_cache", lambda: self.get(self.rollout.wake.remote(rest, True)))
            log.info("colocated hand-over: %s", " -> ".join(self.phases))
        self.phases.clear()
        return out


def train(a) -> int:
    tracker = Tracker(a.run_dir, resolved_config(a), use_wandb=a.use_wandb, wandb_project=a.wandb_project,
                      wandb_group=a.wandb_group, wandb_run_name=a.wandb_run_name, wandb_mode=a.wandb_mode,
                      wandb_dir=a.wandb_dir, use_tensorboard=a.use_tensorboard, tensorboard_dir=a.tensorboard_dir,
                      console_table=not a.quiet_table)
    placement = create_placement(a.actor_world_size, a.num_engines, a.rollout_num_gpus_per_engine, a.colocate, gpu=not a.cpu)
    rollout = RolloutManager.options(num_cpus=0.01, scheduling_strategy=placement.strategy(0)).remote(vars(a), placement_info(placement))
    get = lambda ref: ray.get(ref, timeout=a.ray_call_timeout)  # noqa: E731
    trainer = None
    try:
        if a.colocate:  # the engines take their memory and give it back before the trainer builds on the same GPUs
            get(rollout.ping.remote())
            get(rollout.sleep.remote(list(MEMORY_TAGS)))
        # Otherwise the engines start while the trainer ranks build the model (imports, weights, health checks).
        trainer = TrainerGroup(placement, a.actor_world_size, trainer_config(a), weight_sync_config(a), a.hf_checkpoint,
                               gpu=not a.cpu, colocate=a.colocate, timeout_s=a.ray_call_timeout, cpu_threads=a.trainer_threads)
        get(rollout.ping.remote())
        colocation = Colocation(a.colocate, trainer, rollout, get, a.update_weight_retries)
        peak = peak_flops(a, trainer.call("peak_flops"))
        start = resume(a, trainer, rollout, get)
        tracker.rewind(start)
        # the engines loaded the HF weights: send them the trainer's when those differ (colocated: always, their
        # released weights are gone), which also offloads a colocated trainer before the first rollout
        if a.colocate or start or a.mcore_checkpoint:
            colocation.sync_weights()
        if a.eval_only or (a.eval_interval and start == 0):
            tracker.log(evaluate(a, rollout, get, step=start), start)
            if a.eval_only:
                return 0
        num_rollout = a.num_rollout or rollouts_for_epochs(get(rollout.num_prompts.remote()), a.num_epoch, a.rollout_batch_size)
        tracker.total_steps = num_rollout
        for rollout_id in range(start, num_rollout):
            last = rollout_id + 1 == num_rollout
            save_now = bool(a.save) and (last or bool(a.save_interval and (rollout_id + 1) % a.save_interval == 0))
            metrics = rollout_step(a, rollout_id, trainer, rollout, get, peak, colocation, save_now)
            tracker.log(metrics, rollout_id)
            if a.eval_interval and (last or (rollout_id + 1) % a.eval_interval == 0):
                tracker.log(evaluate(a, rollout, get, step=rollout_id + 1), rollout_id + 1)
        return 0
    finally:
        tracker.finish()
        try:
            get(rollout.shutdown.remote())
        finally:
            if trainer is not None:
                trainer.shutdown()
            placement.remove()


def peak_flops(a, device: dict) -> dict[str, float]:
    """MFU denominators: ``--peak-tflops``, else the device's datasheet peak (GPUs by name, bf16), else the measured
    matmul; the measured one always beside it (review defect #13: MFU against a measured matmul reads 1.3-1.6x
    higher than the usual definition on H100s)."""
    nominal = a.peak_tflops * 1e12 if a.peak_tflops else device["datasheet"]
    source = "--peak-tflops" if a.peak_tflops else f"the {device['device']} datasheet" if nominal else "measured (no datasheet figure)"
    nominal = nominal or device["measured"]
    log.info("MFU against %.1f TFLOP/s (%s); measured matmul peak %.1f TFLOP/s", nominal / 1e12, source,
             device["measured"] / 1e12)
    return {"nominal": nominal, "measured": device["measured"]}


def rollout_step(a, rollout_id: int, trainer: TrainerGroup, rollout, get, peak_flops: dict[str, float],
                 colocation: Colocation, save_now: bool = False) -> dict[str, float]:
    """One step; with ``save_now`` a checkpoint is written after training (while the trainer holds its weights)."""
    t0 = time.perf_counter()
    sample_dicts, metrics = get(rollout.generate.remote(rollout_id))
    perf = {"perf/rollout_time": time.perf_counter() - t0}
    samples = [Sample.from_dict(d) for d in sample_dicts]
    items = train_items(samples, std_normalize=not a.disable_grpo_std_normalization)
    metrics["rollout/step"] = rollout_id
    metrics["rollout/trained_samples"] = float(len(items))
    if not items:
        log.warning("rollout %d: no trainable samples (all groups dropped or empty); skipping the update", rollout_id)
        if save_now:  # the weights did not change, but the data cursor moved
            colocation.release_engines()
            colocation.onload_trainer()
            save(a, rollout_id + 1, trainer, rollout, get)
            colocation.sync_weights()
        return {**metrics, **perf}
    t = time.perf_counter()
    colocation.release_engines()
    colocation.onload_trainer()
    if colocation.on:
        perf["perf/handover_time"] = time.perf_counter() - t
    if a.use_kl_loss:
        t = time.perf_counter()
        for it, ref in zip(items, trainer.call("compute_ref_logprobs", ray.put(items))):
            it.ref_logprobs = ref
        perf["perf/ref_logprob_time"] = time.perf_counter() - t
    if a.num_steps_per_rollout > 1:  # off-policy steps need the behaviour policy's log-probs
        t = time.perf_counter()
        for it, old in zip(items, trainer.call("compute_logprobs", ray.put(items))):
            it.old_logprobs = old
        perf["perf/old_logprob_time"] = time.perf_counter() - t
    t = time.perf_counter()
    size = math.ceil(len(items) / a.num_steps_per_rollout)
    train_metrics: dict[str, float] = {}
    for k in range(0, len(items), size):
        step_metrics = trainer.call("train_step", ray.put(items[k:k + size]))
        for key, value in step_metrics.items():  # averaged over the optimiser steps of this rollout
            train_metrics[key] = train_metrics.get(key, 0.0) + value * size / len(items)
    perf["perf/train_time"] = time.perf_counter() - t
    if save_now:
        t = time.perf_counter()
        save(a, rollout_id + 1, trainer, rollout, get)
        perf["perf/save_time"] = time.perf_counter() - t
    sync = colocation.sync_weights()
    perf["perf/weight_sync_time"] = sync["seconds"]
    metrics["rollout/weight_version"] = sync["version"]
    world = a.actor_world_size
    perf["perf/train_tokens_per_s_per_gpu"] = train_metrics.get("train_tokens", 0.0) / perf["perf/train_time"] / world
    perf["perf/train_tflops_per_gpu"] = train_metrics.get("model_tflops", 0.0) / perf["perf/train_time"] / world
    perf["perf/mfu"] = perf["perf/train_tflops_per_gpu"] * 1e12 / peak_flops["nominal"]
    perf["perf/mfu_vs_measured_peak"] = perf["perf/train_tflops_per_gpu"] * 1e12 / peak_flops["measured"]
    perf["perf/rollout_tokens_per_s"] = sum(s.response_length for s in samples) / perf["perf/rollout_time"]
    perf["perf/step_time"] = time.perf_counter() - t0
    return {**metrics, **{f"train/{k}": v for k, v in train_metrics.items()}, **perf}


def train_items(samples: list[Sample], std_normalize: bool = True) -> list[TrainItem]:
    """Samples -> trainer inputs with GRPO advantages. Samples of dropped groups (judge errors) or without a reward
    or response are not trained on."""
    kept = [s for s in samples if s.reward is not None and s.response_tokens and "group_dropped" not in (s.reward_parts or {})]
    advantages = grpo_advantages([s.reward for s in kept], [s.group_id for s in kept], std_normalize=std_normalize)
    return [TrainItem(prompt_tokens=s.prompt_tokens, response_tokens=s.response_tokens, loss_mask=s.loss_mask,
                      advantage=adv, rollout_logprobs=s.rollout_logprobs or None) for s, adv in zip(kept, advantages)]


def evaluate(a, rollout, get, step: int) -> dict[str, float]:
    t = time.perf_counter()
    metrics: dict[str, float] = {"eval/step": step}
    for name, path in a.eval_sets:
        metrics.update(get(rollout.evaluate.remote(name, path)))
    metrics["perf/eval_time"] = time.perf_counter() - t
    log.info("eval at step %d: %s", step, {k: round(v, 4) for k, v in metrics.items()})
    return metrics


def save(a, next_rollout_id: int, trainer: TrainerGroup, rollout, get) -> None:
    path = Path(a.save) / f"iter_{next_rollout_id:07d}"
    extra = {"rollout_id": next_rollout_id, "data": get(rollout.state_dict.remote())}
    trainer.call("save", str(path), extra)
    if a.save_hf:
        trainer.call("export_hf", a.save_hf.format(rollout_id=next_rollout_id))
    log.info("saved %s", path)


def resume(a, trainer: TrainerGroup, rollout, get) -> int:
    """The rollout id to start from (0, or the one after the latest checkpoint in --load)."""
    if not a.load:
        return 0
    path = latest_checkpoint(a.load)
    if path is None:
        log.info("--load %s: no checkpoint yet, starting from the initial weights", a.load)
        return 0
    extra = trainer.call("load", str(path))
    get(rollout.load_state_dict.remote(extra.get("data", {})))
    log.info("resumed from %s at rollout %d", path, extra["rollout_id"])
    return int(extra["rollout_id"])


def trainer_config(a) -> TrainerConfig:
    return TrainerConfig(
        hf_checkpoint=a.hf_checkpoint, mcore_checkpoint=a.mcore_checkpoint,
        parallel=ParallelConfig(tp=a.tensor_model_parallel_size, pp=a.pipeline_model_parallel_size,
                                cp=a.context_parallel_size, ep=a.expert_model_parallel_size, sequence_parallel=a.sequence_parallel,
                                etp=a.expert_tensor_parallel_size),
        dtype=a.dtype, max_tokens_per_gpu=a.max_tokens_per_gpu, log_probs_chunk_size=a.log_probs_chunk_size,
        attention=a.attention_backend,
        rollout_temperature=a.rollout_temperature, recompute=a.recompute_activations, seed=a.seed, loss=loss_config(a),
        optim=OptimConfig(lr=a.lr, min_lr=a.min_lr, lr_warmup_steps=a.lr_warmup_iters, lr_decay_steps=a.lr_decay_iters,
                          lr_decay_style=a.lr_decay_style, weight_decay=a.weight_decay, adam_beta1=a.adam_beta1,
                          adam_beta2=a.adam_beta2, adam_eps=a.adam_eps, clip_grad=a.clip_grad),
    )


def weight_sync_config(a) -> WeightSyncConfig:
    return WeightSyncConfig(transport=a.update_weight_transport, disk_dir=a.update_weight_disk_dir,
                            bucket_mb=a.update_weight_buffer_size, backend="gloo" if a.cpu else "nccl",
                            engine_ranks=a.rollout_num_gpus_per_engine, pause_mode=a.update_weight_pause_mode,
                            timeout_s=a.update_weight_timeout)


def start_ray(a) -> None:
    if a.ray_address:
        ray.init(address=a.ray_address, log_to_driver=True)
        return
    import os

    ray.init(num_cpus=a.ray_num_cpus or os.cpu_count(), include_dashboard=False,
             object_store_memory=a.ray_object_store_mb << 20, log_to_driver=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        a = parse_args(argv)
    except ValueError as e:
        print(f"longtrace train: {e}", file=sys.stderr)
        return 2
    import json

    log.info("resolved config (also %s/config.json and the wandb run config): %s", a.run_dir,
             json.dumps(resolved_config(a), sort_keys=True, default=str))
    start_ray(a)
    try:
        return train(a)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
