"""The Megatron-core policy trainer: one instance per rank (torchrun, or a Ray actor per GPU).

    trainer = MegatronTrainer(TrainerConfig(hf_checkpoint="models/Qwen3-4B", parallel=ParallelConfig(tp=4, ...)))
    old = trainer.compute_logprobs(items)            # forward only (old / reference / eval log-probs)
    metrics = trainer.train_step(items)              # one optimiser step on the whole global batch
    trainer.save_checkpoint(dir, extra) / trainer.load_checkpoint(dir)
    trainer.export_hf(dir)                           # HF safetensors (weight sync from disk, --save-hf)

Every rank receives the whole global batch (``TrainItem``s); packing is deterministic, so each data-parallel rank
takes its own balanced share of micro-batches without further communication. Megatron runs the rest: DDP grad
reduction, the (distributed) optimiser, pipeline schedules, TP/SP/PP/CP/EP. On CPU the same code runs on gloo
with the local layer spec through ``megatron_cpu.install()``.

Loss scaling: megatron's schedule divides a micro-batch loss by the number of micro-batches (and multiplies by
the CP size), and DDP averages gradients over the DP x CP ranks. Each micro-batch loss here is the exact share of
the global-batch loss (token weights computed from the whole batch), pre-multiplied by
``num_microbatches * dp_size`` so those divisions cancel: gradients do not depend on the parallel layout.
"""
from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist

from .flops import sequence_cost, train_flops
from .hf_weights import Shard, export_hf_checkpoint, iter_hf_tensors, load_hf_weights
from .loss import LossConfig, LossStats, policy_loss
from .megatron_model import ModelArch, ParallelConfig, build_gpt_model, resolve_attention, transformer_config
from .packing import MicroBatch, TrainItem, balance_micro_batches, build_micro_batch, first_fit_decreasing

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    lr: float = 2e-6
    min_lr: float = 0.0
    lr_warmup_steps: int = 0
    lr_decay_steps: int | None = None  # None: constant after warm-up
    lr_decay_style: str = "constant"  # constant | linear | cosine
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    use_distributed_optimizer: bool = True


@dataclass
class TrainerConfig:
    hf_checkpoint: str  # HF directory: architecture (config.json), tokenizer, and the initial weights
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    dtype: str = "bf16"  # bf16 (production) or fp32 (CPU tests)
    max_tokens_per_gpu: int = 8192
    log_probs_chunk_size: int = 4096
    rollout_temperature: float = 1.0  # log-probs are computed on logits / temperature, like the rollout's
    recompute: bool = False  # full activation recompute (long context)
    seed: int = 1234
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    attention: str = "auto"  # te | sdpa | local (megatron_model.resolve_attention); auto: te on GPUs, sdpa on CPUs
    load_weights: bool = True  # load hf_checkpoint into the model (False: random init, e.g. benchmarks)
    mcore_checkpoint: str | None = None  # initial weights from `longtrace convert hf-to-mcore` output instead
    keep_reference: bool | None = None  # keep the initial weights for reference log-probs (default: when KL is on)
    # Local layer spec only (no transformer-engine: CPU runs): attention is dense over the whole packed micro-batch
    # (a [T, T] mask), so its cost grows with the square of the packed length; micro-batches are capped at this
    # many tokens there (a longer sample still gets a bin of its own). TE packs THD with cu_seqlens and ignores it.
    local_spec_pack_tokens: int = 512

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[self.dtype]


def init_distributed() -> None:
    """torch.distributed from the usual environment (torchrun, Ray actors); single-process defaults otherwise."""
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + random.Random(os.getpid()).randrange(1000)))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def init_megatron(arch: ModelArch, par: ParallelConfig, seed: int, training: bool = True) -> None:
    """torch.distributed, the CPU shims (no CUDA), megatron's parallel state and seeds."""
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel

    init_distributed()
    if not torch.cuda.is_available():
        from . import megatron_cpu

        megatron_cpu.install()
    par.check(arch, dist.get_world_size(), training=training)
    if not ps.model_parallel_is_initialized():
        ps.initialize_model_parallel(
            tensor_model_parallel_size=par.tp, pipeline_model_parallel_size=par.pp,
            context_parallel_size=par.cp, expert_model_parallel_size=par.ep, expert_tensor_parallel_size=par.etp,
        )
    random.seed(seed)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def build_stage_model(arch: ModelArch, tcfg, attention: str | bool):
    """This rank's pipeline stage of the policy model, on this rank's device (``attention``: te | sdpa | local, or
    the older use_te bool)."""
    from megatron.core import parallel_state as ps

    if isinstance(attention, bool):
        attention = "te" if attention else "local"
    model = build_gpt_model(arch, tcfg, pre_process=ps.is_pipeline_first_stage(),
                            post_process=ps.is_pipeline_last_stage(), attention=attention)
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    return model


def load_mcore_model(model, mcore_dir: str | Path) -> None:
    """Weights from a megatron distributed checkpoint: ``longtrace convert hf-to-mcore`` output, slime's
    ``tools/convert_hf_to_torch_dist.py`` output, or a slime / megatron-LM save (its tracker file is followed)."""
    from .checkpoint import resolve_checkpoint_dir
    from .convert import load_checkpoint_weights

    load_checkpoint_weights(model, resolve_checkpoint_dir(mcore_dir))


class MegatronTrainer:
    def __init__(self, cfg: TrainerConfig):
        self.cfg = cfg
        cfg.loss.check()
        par = cfg.parallel
        self.arch = ModelArch.from_hf_config(cfg.hf_checkpoint)
        self.offloaded = False  # colocated runs: weights handed over to the engines (offload / onload)
        init_megatron(self.arch, par, cfg.seed)
        self.attention = resolve_attention(cfg.attention, par.cp)
        self.use_te = self.attention == "te"
        self.device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

        self.tcfg = transformer_config(self.arch, par, params_dtype=cfg.torch_dtype, use_te=self.use_te, recompute=cfg.recompute)
        model = build_stage_model(self.arch, self.tcfg, self.attention)
        if cfg.mcore_checkpoint:
            load_mcore_model(model, cfg.mcore_checkpoint)
            log.info("loaded weights from megatron checkpoint %s", cfg.mcore_checkpoint)
        elif cfg.load_weights:
            n = load_hf_weights(model, cfg.hf_checkpoint, self.arch)
            log.info("loaded %d tensors from %s", n, cfg.hf_checkpoint)
        self.model = self._wrap(model)
        self.optimizer, self.scheduler = self._build_optimizer()
        self.step = 0
        keep_ref = cfg.keep_reference if cfg.keep_reference is not None else cfg.loss.kl_loss_coef != 0
        # The reference policy is not a second model: a host-memory copy of this rank's initial weights, swapped
        # in for the reference log-prob pass (as slime does).
        self._reference = self._weights_to_host() if keep_ref else None

    # -------------------------------------------------------------------------------------------- set-up
    def _wrap(self, model):
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
        from megatron.core.transformer.module import Float16Module

        if self.cfg.dtype != "fp32":
            model = Float16Module(self.tcfg, model)
        ddp = DistributedDataParallel(
            config=self.tcfg,
            ddp_config=DistributedDataParallelConfig(
                grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                use_distributed_optimizer=self.cfg.optim.use_distributed_optimizer,
            ),
            module=model,
        )
        self.tcfg.finalize_model_grads_func = finalize_model_grads
        self.tcfg.no_sync_func = ddp.no_sync
        return ddp

    def _build_optimizer(self):
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

        o = self.cfg.optim
        optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay, adam_beta1=o.adam_beta1,
                adam_beta2=o.adam_beta2, adam_eps=o.adam_eps, clip_grad=o.clip_grad,
                bf16=self.cfg.dtype == "bf16", fp16=self.cfg.dtype == "fp16", params_dtype=self.cfg.torch_dtype,
                use_distributed_optimizer=o.use_distributed_optimizer,
            ),
            [self.model],
        )
        self.tcfg.grad_scale_func = optimizer.scale_loss
        decay_steps = o.lr_decay_steps or max(o.lr_warmup_steps, 1) + 10**9  # effectively constant
        scheduler = OptimizerParamScheduler(
            optimizer, init_lr=0.0 if o.lr_warmup_steps else o.lr, max_lr=o.lr, min_lr=o.min_lr,
            lr_warmup_steps=o.lr_warmup_steps, lr_decay_steps=decay_steps, lr_decay_style=o.lr_decay_style,
            start_wd=o.weight_decay, end_wd=o.weight_decay, wd_incr_steps=decay_steps, wd_incr_style="constant",
        )
        return optimizer, scheduler

    @property
    def unwrapped(self):
        module = self.model.module
        return module.module if hasattr(module, "module") else module

    # -------------------------------------------------------------------------------------------- batching
    def _my_micro_batches(self, items: Sequence[TrainItem]) -> list[MicroBatch]:
        from megatron.core import parallel_state as ps

        par = self.cfg.parallel
        lengths = [it.length for it in items]
        budget = self.cfg.max_tokens_per_gpu * par.cp
        if self.attention == "local":  # a dense [T, T] mask per packed micro-batch
            budget = min(budget, self.cfg.local_spec_pack_tokens)
        bins = first_fit_decreasing(lengths, budget)
        per_rank = balance_micro_batches(
            bins, ps.get_data_parallel_world_size(), lambda b: sum(sequence_cost(self.arch, lengths[i]) for i in b)
        )
        empty = sum(not b for r in per_rank for b in r)
        if empty:
            log.info("%d sample(s) over %d data-parallel ranks: %d zero-weight micro-batch(es) even out the ranks",
                     len(items), len(per_rank), empty)
        return [self._micro_batch(items, b) if b else self._zero_weight_micro_batch(items)
                for b in per_rank[ps.get_data_parallel_rank()]]

    def _micro_batch(self, items: Sequence[TrainItem], indices: Sequence[int]) -> MicroBatch:
        from megatron.core import parallel_state as ps

        par = self.cfg.parallel
        if par.cp > 1:
            from .context_parallel import build_cp_micro_batch

            tp = par.tp if par.sequence_parallel else 1
            return build_cp_micro_batch(items, indices, cp_size=par.cp, cp_rank=ps.get_context_parallel_rank(),
                                        tp_size=tp, device=self.device)[0]
        pad = par.tp if par.sequence_parallel else 1
        return build_micro_batch(items, indices, pad_to_multiple=pad, thd=self.attention != "local", device=self.device)

    def _zero_weight_micro_batch(self, items: Sequence[TrainItem]) -> MicroBatch:
        """The shortest sample with every loss weight and mask at 0: a rank without samples runs it, so that every
        rank takes part in the same number of forward/backward passes; it adds nothing to the loss, the gradients or
        the metrics, and its log-probs are not reported (``items`` is empty)."""
        it = min(items, key=lambda x: x.length)
        r = len(it.response_tokens)
        dummy = replace(it, loss_mask=[0] * r, advantage=0.0, loss_weight=0.0)
        mb = self._micro_batch([dummy], [0])
        mb.items = []
        return mb

    def _run(self, micro_batches: list[MicroBatch], *, forward_only: bool, loss_fn) -> None:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        def forward_step(data_iterator: Iterator[MicroBatch], model):
            mb = next(data_iterator)
            output = model(
                mb.tokens, mb.position_ids, mb.attention_mask, mb.packed_seq_params,
                logit_positions=mb.logit_positions, targets=mb.targets, chunk_size=self.cfg.log_probs_chunk_size,
                temperature=self.cfg.rollout_temperature, with_entropy=self._with_entropy,
            )
            return output, partial(loss_fn, mb)

        get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iter(micro_batches),
            model=[self.model],
            num_microbatches=len(micro_batches),
            seq_length=max(mb.tokens.shape[1] for mb in micro_batches),
            micro_batch_size=1,
            forward_only=forward_only,
        )

    # -------------------------------------------------------------------------------------------- public API
    @torch.no_grad()
    def compute_logprobs(self, items: Sequence[TrainItem], with_entropy: bool = False) -> list[list[float]] | tuple:
        """Per-sample response log-probs under the current weights (every rank gets all of them).

        With ``with_entropy`` returns (logprobs, entropies)."""
        self._check_resident("compute_logprobs")
        self.model.eval()
        self._with_entropy = with_entropy
        results: dict[int, tuple[list[float], list[float]]] = {}

        def collect(mb: MicroBatch, output):
            logp, entropy = output
            if mb.cp_token_index is not None:  # each CP rank holds a share of every sample's tokens
                from megatron.core import parallel_state as ps

                from .context_parallel import gather_token_values

                total, group = sum(mb.response_lengths), ps.get_context_parallel_group()
                logp = gather_token_values(logp, mb.cp_owners, total, group)
                entropy = None if entropy is None else gather_token_values(entropy, mb.cp_owners, total, group)
            per_logp = logp.split(mb.response_lengths)
            per_ent = entropy.split(mb.response_lengths) if entropy is not None else [None] * len(mb.items)
            for i, lp, en in zip(mb.items, per_logp, per_ent):
                results[i] = (lp.tolist(), en.tolist() if en is not None else [])
            return torch.zeros((), device=logp.device), {}

        mbs = self._my_micro_batches(items)
        self._run(mbs, forward_only=True, loss_fn=collect)
        gathered = self._gather_from_last_stage(results)
        logps = [gathered[i][0] for i in range(len(items))]
        return (logps, [gathered[i][1] for i in range(len(items))]) if with_entropy else logps

    def _weights_to_host(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in self.unwrapped.named_parameters()}

    @torch.no_grad()
    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        for n, p in self.unwrapped.named_parameters():
            p.copy_(weights[n])

    @torch.no_grad()
    def compute_ref_logprobs(self, items: Sequence[TrainItem]) -> list[list[float]]:
        """Log-probs under the reference (initial) weights; the current weights are restored afterwards."""
        self._check_resident("compute_ref_logprobs")
        if self._reference is None:
            raise ValueError("no reference weights kept: set kl_loss_coef != 0 or keep_reference=True")
        current = self._weights_to_host()
        self._load_weights(self._reference)
        try:
            return self.compute_logprobs(items)
        finally:
            self._load_weights(current)

    def compute_gradients(self, items: Sequence[TrainItem]) -> LossStats:
        """Forward + backward over the global batch; the reduced gradients are left in megatron's grad buffers
        (``train_step`` then steps the optimiser; tests read them with ``export_hf(source="grad")``)."""
        from megatron.core import parallel_state as ps

        self.model.train()
        self._with_entropy = self.cfg.loss.entropy_coef != 0
        self._set_token_weights(items)
        mbs = self._my_micro_batches(items)
        scale = len(mbs) * ps.get_data_parallel_world_size()
        stats = LossStats()

        def loss_fn(mb: MicroBatch, output):
            logp, entropy = output
            total, mb_stats = policy_loss(
                logp, advantages=mb.advantages, loss_mask=mb.loss_mask, token_weight=mb.token_weight, cfg=self.cfg.loss,
                old_logp=mb.old_logprobs, rollout_logp=mb.rollout_logprobs, ref_logp=mb.ref_logprobs, entropy=entropy,
            )
            stats.merge(mb_stats)
            return total * scale, {}

        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        self._run(mbs, forward_only=False, loss_fn=loss_fn)
        return stats

    def train_step(self, items: Sequence[TrainItem]) -> dict[str, float]:
        """One optimiser step over the whole global batch ``items``; returns reduced metrics."""
        self._check_resident("train_step")
        start = time.perf_counter()
        stats = self.compute_gradients(items)
        ok, grad_norm, _ = self.optimizer.step()
        if ok:
            self.scheduler.step(increment=1)
        seconds = time.perf_counter() - start
        self.step += 1
        summary = self._reduce_stats(stats).summary()
        seq_lens = [it.length for it in items]
        summary.update({
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "update_successful": float(ok),
            "lr": self.optimizer.param_groups[0]["lr"],
            "step_time": seconds,
            "train_tokens": float(sum(seq_lens)),
            "tokens_per_s_per_gpu": sum(seq_lens) / seconds / dist.get_world_size(),
            "model_tflops": train_flops(self.arch, seq_lens, [len(it.response_tokens) for it in items]) / 1e12,
        })
        return summary

    def _set_token_weights(self, items: Sequence[TrainItem]) -> None:
        """Token weights so that the micro-batch losses sum to the global-batch loss (see the module docstring)."""
        masked = [sum(it.loss_mask) if it.loss_mask is not None else len(it.response_tokens) for it in items]
        if self.cfg.loss.calculate_per_token_loss:
            total = max(sum(masked), 1)
            for it in items:
                it.loss_weight = 1.0 / total
        else:
            for it, n in zip(items, masked):
                it.loss_weight = 1.0 / (max(n, 1) * len(items))

    # -------------------------------------------------------------------------------------------- colocation
    def offload(self) -> None:
        """Colocated runs: move parameters, gradients and optimiser state to host memory while the engines
        generate (megatron's RL offload hooks: the parameters' device storage is resized to 0, so nothing may read
        them until ``onload``). On CPU nothing moves, but the trainer counts as offloaded all the same, so that a
        hand-over order that reads offloaded weights fails on CPU as it would corrupt a GPU run."""
        if self.offloaded:
            return
        if torch.cuda.is_available():
            for buffer in self.model.buffers + self.model.expert_parallel_buffers:
                buffer.offload_to_cpu(move_params=True, move_grads=True)
            self.optimizer.offload_to_cpu()
            torch.cuda.empty_cache()
        self.offloaded = True

    def onload(self) -> None:
        if not self.offloaded:
            return
        if torch.cuda.is_available():
            for buffer in self.model.buffers + self.model.expert_parallel_buffers:
                buffer.reload_from_cpu(move_params=True, move_grads=True)
            self.optimizer.restore_from_cpu()
        self.offloaded = False

    def _check_resident(self, what: str) -> None:
        if self.offloaded:
            raise RuntimeError(f"{what} while the trainer's weights are offloaded (colocated hand-over): onload first; "
                               "on a GPU this would read freed memory")

    # -------------------------------------------------------------------------------------------- collectives
    def _is_reporting_rank(self, per_sample: bool = False) -> bool:
        """Ranks whose results count once: last pipeline stage, TP rank 0 (TP ranks compute the same values);
        for per-sample results also CP rank 0 (after the CP gather every CP rank has them)."""
        from megatron.core import parallel_state as ps

        ok = ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0
        return ok and (not per_sample or ps.get_context_parallel_rank() == 0)

    def _reduce_stats(self, stats: LossStats) -> LossStats:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, stats if self._is_reporting_rank() else None)
        merged = LossStats()
        for s in gathered:
            if s is not None:
                merged.merge(s)
        return merged

    def _gather_from_last_stage(self, results: dict) -> dict:
        """Per-sample results held by the last pipeline stage of each DP rank -> every rank (under CP each rank
        holds a share of each sample's tokens; those are merged in position order by ``gather_token_values``)."""
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, results if self._is_reporting_rank(per_sample=True) else None)
        merged: dict = {}
        for part in gathered:
            if part:
                merged.update(part)
        return merged

    # -------------------------------------------------------------------------------------------- weights out
    def hf_named_tensors(self, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """HF-named full tensors of this rank's pipeline stage (collective over TP; see hf_weights.iter_hf_tensors)."""
        from megatron.core import parallel_state as ps

        self._check_resident("reading the weights for a sync")
        return iter_hf_tensors(self.unwrapped, self.arch, Shard.current(), ps.get_tensor_model_parallel_group(), dtype)

    def export_hf(self, out_dir: str | Path, dtype: torch.dtype | None = None, max_shard_bytes: int = 2 << 30,
                  source: str = "param") -> Path:
        """Write the current weights (or, with ``source="grad"``, the gradients) as an HF checkpoint; config and
        tokenizer are copied from ``hf_checkpoint``."""
        self._check_resident("exporting the weights")
        return export_hf_checkpoint(self.unwrapped, self.arch, out_dir, self.cfg.hf_checkpoint, dtype, max_shard_bytes, source)

    # -------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, ckpt_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        from .checkpoint import save_trainer_checkpoint

        self._check_resident("saving a checkpoint")
        return save_trainer_checkpoint(self, Path(ckpt_dir), extra or {})

    def load_checkpoint(self, ckpt_dir: str | Path) -> dict[str, Any]:
        from .checkpoint import load_trainer_checkpoint

        return load_trainer_checkpoint(self, Path(ckpt_dir))
