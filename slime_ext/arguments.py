"""``longtrace train`` flags. Names follow slime (and LongTraceRL's slime fork) wherever the concept exists there,
so a slime recipe reads the same. ``parse_args`` validates everything up front with one message per problem.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from dataclasses import asdict

from reward.config import add_reward_args, reward_config_from_args

from .loss import KL_TYPES, SLIME_TIS_FUNCTIONS, TIS_MODES, LossConfig
from .megatron_model import ATTENTION_BACKENDS, ModelArch, ParallelConfig, resolve_attention
from .rollout import add_rollout_args
from .sglang_env import resolve_backend
from .weight_sync import PAUSE_MODES, TRANSPORTS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longtrace train", description="GRPO with a Megatron-core trainer and SGLang (or torch) rollout engines.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("cluster and placement")
    g.add_argument("--actor-num-nodes", type=int, default=1)
    g.add_argument("--actor-num-gpus-per-node", type=int, default=1, help="trainer ranks per node (CPU: processes)")
    g.add_argument("--rollout-num-gpus", type=int, default=None, help="GPUs for engines (default: the actor's when colocated)")
    g.add_argument("--rollout-num-gpus-per-engine", type=int, default=1, help="SGLang tensor-parallel size")
    g.add_argument("--colocate", action="store_true", help="engines and trainer share the GPUs (engines sleep while training)")
    g.add_argument("--ray-address", default=None, help="an existing Ray cluster ('auto' inside `ray job submit`); default: start one locally")
    g.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of a locally started Ray (CPU runs)")
    g.add_argument("--ray-object-store-mb", type=int, default=512, help="object store of a locally started Ray")
    g.add_argument("--ray-call-timeout", type=float, default=4 * 3600.0, help="seconds any call to an actor may take")
    g.add_argument("--trainer-threads", type=int, default=None, help="CPU runs: torch threads per trainer rank")
    g.add_argument("--cpu", action="store_true",
                   help="run on CPU (default when CUDA is absent): gloo, local spec, SGLang's CPU backend (or the torch engine)")

    g = p.add_argument_group("rollout engines")
    g.add_argument("--rollout-backend", choices=["auto", "sglang", "torch"], default="auto",
                   help="auto: SGLang where it can run (GPU; CPU after scripts/setup_sglang_cpu.sh), else the torch "
                        "fallback engine, with a line saying why")
    g.add_argument("--sglang-python", default=None,
                   help="interpreter with SGLang (default: $LONGTRACE_SGLANG_PYTHON; CPU: .sglang-cpu/venv; else this one)")
    g.add_argument("--num-engines", type=int, default=None, help="default: rollout GPUs / GPUs per engine (CPU: 1)")
    g.add_argument("--torch-threads", type=int, default=1, help="CPU engines: intra-op threads per engine")
    g.add_argument("--sglang-mem-fraction-static", type=float, default=None)
    g.add_argument("--sglang-context-length", type=int, default=None)
    g.add_argument("--sglang-ep-size", type=int, default=None, help="expert parallelism inside each engine (MoE)")
    g.add_argument("--sglang-enable-fp32-lm-head", action="store_true",
                   help="engines compute the output layer in fp32, like the trainer (the rollout log-probs feed IcePop)")
    g.add_argument("--sglang-extra-args", default="", help="other `sglang.launch_server` flags, one string (ours only)")
    g.add_argument("--router-policy", default="round_robin")
    g.add_argument("--engine-health-timeout", type=float, default=900.0)

    g = p.add_argument_group("model and checkpoints")
    g.add_argument("--hf-checkpoint", required=True, help="HF directory: config, tokenizer, initial weights, engines' model")
    g.add_argument("--ref-load", "--mcore-checkpoint", dest="mcore_checkpoint", default=None,
                   help="initial weights from `longtrace convert hf-to-mcore` (a Megatron torch_dist checkpoint) instead "
                        "of the HF weights; slime's name: its actor starts from --ref-load when --load holds none")
    g.add_argument("--load", default=None, help="resume from this directory of trainer checkpoints (latest)")
    g.add_argument("--save", default=None, help="directory for trainer checkpoints (iter_XXXXXXX)")
    g.add_argument("--save-interval", type=int, default=None, help="rollout steps between checkpoints (and at the end)")
    g.add_argument("--save-hf", default=None, help="also export HF weights at save time, e.g. 'out/hf/step_{rollout_id}'")

    g = p.add_argument_group("data")
    g.add_argument("--prompt-data", default=None, help="JSONL / Parquet file or `longtrace data export` folder (train split)")
    g.add_argument("--input-key", default="input_messages", help="record field with the chat messages (or a prompt string)")
    g.add_argument("--label-key", default="label")
    g.add_argument("--metadata-key", default="metadata")
    g.add_argument("--apply-chat-template", action="store_true",
                   help="slime's flag: prompts go through the tokenizer's chat template. longtrace train always templates "
                        "message lists and prompt strings (slime only with this flag): pass it so that one command line "
                        "means the same in both")
    g.add_argument("--apply-chat-template-kwargs", type=json.loads, default=None,
                   help='JSON passed to the chat template (slime\'s flag), e.g. \'{"enable_thinking": true}\'')
    g.add_argument("--rollout-shuffle", action="store_true", help="reshuffle the prompts every epoch")
    g.add_argument("--rollout-seed", type=int, default=42)
    g.add_argument("--num-rollout", type=int, default=None, help="rollout steps to run")
    g.add_argument("--num-epoch", type=int, default=None, help="alternative to --num-rollout")

    add_rollout_args(p)  # --rollout-batch-size, --n-samples-per-prompt, sampling, over-sampling, filters, client
    g = p.add_argument_group("batching")
    g.add_argument("--global-batch-size", type=int, default=None, help="samples per optimiser step (default: a whole rollout)")
    g.add_argument("--num-steps-per-rollout", type=int, default=None)
    g.add_argument("--max-tokens-per-gpu", type=int, default=8192, help="packing budget per micro-batch (per CP group: x CP)")
    g.add_argument("--log-probs-chunk-size", type=int, default=4096)

    g = p.add_argument_group("parallelism and precision")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1)
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    g.add_argument("--context-parallel-size", type=int, default=1)
    g.add_argument("--expert-model-parallel-size", type=int, default=1)
    g.add_argument("--expert-tensor-parallel-size", type=int, default=None,
                   help="tensor parallelism inside the MoE experts (default: --tensor-model-parallel-size)")
    g.add_argument("--sequence-parallel", action="store_true")
    g.add_argument("--recompute-activations", action="store_true", help="full activation recompute (long context)")
    g.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default="auto",
                   help="te: transformer-engine (GPUs; required there unless another is named); sdpa: PyTorch's fused "
                        "attention per packed sample (the CPU default; GPUs without transformer-engine, no CP); local: "
                        "megatron's unfused attention with a dense mask (short micro-batches). auto: te on GPUs, sdpa on CPUs")
    g.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    g.add_argument("--bf16", dest="dtype", action="store_const", const="bf16", help="Megatron's name for --dtype bf16")
    g.add_argument("--seed", type=int, default=1234)

    g = p.add_argument_group("GRPO")
    g.add_argument("--advantage-estimator", choices=["grpo"], default="grpo")
    g.add_argument("--disable-grpo-std-normalization", action="store_true")
    g.add_argument("--eps-clip", type=float, default=0.2)
    g.add_argument("--eps-clip-high", type=float, default=0.28)
    g.add_argument("--eps-clip-c", type=float, default=None)
    g.add_argument("--use-kl-loss", action="store_true")
    g.add_argument("--kl-loss-coef", type=float, default=0.0)
    g.add_argument("--kl-loss-type", choices=KL_TYPES, default="low_var_kl")
    g.add_argument("--entropy-coef", type=float, default=0.0)
    g.add_argument("--calculate-per-token-loss", action="store_true")
    g.add_argument("--use-tis", action="store_true",
                   help="train-inference mismatch correction: slime's vanilla TIS (clamp) unless IcePop is chosen")
    g.add_argument("--custom-tis-function-path", default=None,
                   help=f"slime's way to choose the correction; its two built-ins are understood: {SLIME_TIS_FUNCTIONS['icepop']} "
                        f"(IcePop) and {SLIME_TIS_FUNCTIONS['tis']} (clamp). Other paths are refused (no slime here)")
    g.add_argument("--tis-mode", choices=TIS_MODES, default=None,
                   help="tis: clamp the ratio into the clip range; icepop: zero the tokens outside it (default: "
                        "from --custom-tis-function-path, else tis, as in slime)")
    g.add_argument("--tis-clip-low", type=float, default=0.5)
    g.add_argument("--tis-clip", type=float, default=2.0)

    g = p.add_argument_group("optimiser")
    g.add_argument("--lr", type=float, default=2e-6)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--lr-decay-style", choices=["constant", "linear", "cosine"], default="constant")
    g.add_argument("--lr-warmup-iters", type=int, default=0)
    g.add_argument("--lr-decay-iters", type=int, default=None)
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--adam-beta1", type=float, default=0.9)
    g.add_argument("--adam-beta2", type=float, default=0.98)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--clip-grad", type=float, default=1.0)

    g = p.add_argument_group("weight sync")
    g.add_argument("--update-weight-transport", choices=[*TRANSPORTS, "nccl"], default=None,
                   help="default: tensor when colocated, distributed on GPU otherwise, disk on CPU; nccl (slime's name) "
                        "is distributed")
    g.add_argument("--update-weight-disk-dir", default=None, help="default: <run dir>/weights")
    g.add_argument("--update-weight-buffer-size", type=float, default=512.0, help="MB per bucket")
    g.add_argument("--update-weight-pause-mode", choices=PAUSE_MODES, default="retract",
                   help="how engines pause for a sync: retract (running requests wait and resume on the new weights), "
                        "abort (they end, aborted), in_place (they stay running: /flush_cache then fails)")
    g.add_argument("--update-weight-timeout", type=float, default=600.0, help="seconds any weight-sync call may take")
    g.add_argument("--update-weight-retries", type=int, default=1,
                   help="retries of a refused weight sync (e.g. an engine restarted and lost its update group); "
                        "then the run stops with the engine's message")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-interval", type=int, default=None, help="rollout steps between evaluations (and before training)")
    g.add_argument("--eval-prompt-data", nargs="+", default=None, metavar="NAME PATH", help="pairs: name path [name path ...]")
    g.add_argument("--n-samples-per-eval-prompt", type=int, default=4)
    g.add_argument("--eval-temperature", type=float, default=0.6)
    g.add_argument("--eval-top-p", type=float, default=0.95)
    g.add_argument("--eval-top-k", type=int, default=20)
    g.add_argument("--eval-max-response-len", type=int, default=None, help="default: --rollout-max-response-len")
    g.add_argument("--eval-only", action="store_true", help="evaluate the initial weights and exit (eta forced to 0)")

    g = p.add_argument_group("tracking")
    g.add_argument("--run-dir", default=None, help="where logs, weights and summaries go (default: runs/<timestamp>)")
    g.add_argument("--use-wandb", action="store_true")
    g.add_argument("--wandb-project", default="longtrace-rl")
    g.add_argument("--wandb-group", default=None)
    g.add_argument("--wandb-run-name", default=None)
    g.add_argument("--wandb-mode", choices=["online", "offline", "disabled"], default=None,
                   help="default: $WANDB_MODE, else online")
    g.add_argument("--wandb-dir", default=None, help="default: <run dir>")
    g.add_argument("--use-tensorboard", action="store_true")
    g.add_argument("--tensorboard-dir", default=None, help="default: <run dir>/tensorboard")
    g.add_argument("--peak-tflops", type=float, default=None,
                   help="per-device peak for perf/mfu (default: the GPU's datasheet bf16 peak, e.g. 989 on H100 SXM; "
                        "else a matmul measured at start, which perf/mfu_vs_measured_peak always uses)")
    g.add_argument("--quiet-table", action="store_true", help="no per-step table on the console")

    g = p.add_argument_group("reward service")
    g.add_argument("--reward-url", default=None, help="score through `longtrace reward serve` instead of in-process")
    add_reward_args(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, fill defaults that depend on other flags, and validate (ValueError listing every problem)."""
    import torch

    a = build_parser().parse_args(argv)
    a.cpu = a.cpu or not torch.cuda.is_available()
    a.rollout_backend, note = resolve_backend(a.rollout_backend, "cpu" if a.cpu else "cuda", a.sglang_python)
    if note:
        import logging

        logging.getLogger("longtrace.train").warning(note)
    a.dtype = a.dtype or ("fp32" if a.cpu else "bf16")
    a.actor_world_size = a.actor_num_nodes * a.actor_num_gpus_per_node
    if a.rollout_num_gpus is None:
        a.rollout_num_gpus = a.actor_world_size if (a.colocate or a.cpu) else None
    if a.num_engines is None:
        a.num_engines = 1 if a.cpu else max(1, (a.rollout_num_gpus or 0) // a.rollout_num_gpus_per_engine)
    rollout_samples = a.rollout_batch_size * a.n_samples_per_prompt
    if a.global_batch_size is None:
        a.global_batch_size = rollout_samples // (a.num_steps_per_rollout or 1)
    if a.num_steps_per_rollout is None:
        a.num_steps_per_rollout = max(1, rollout_samples // a.global_batch_size)
    if a.update_weight_transport == "nccl":  # slime's name for the NCCL broadcast from trainer rank 0
        a.update_weight_transport = "distributed"
    if a.update_weight_transport is None:
        a.update_weight_transport = "tensor" if a.colocate else ("disk" if a.cpu else "distributed")
    if a.eval_max_response_len is None:
        a.eval_max_response_len = a.rollout_max_response_len
    a.use_kl_loss = a.use_kl_loss or a.kl_loss_coef != 0
    if a.run_dir is None:
        import time

        a.run_dir = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    a.update_weight_disk_dir = a.update_weight_disk_dir or os.path.join(a.run_dir, "weights")
    a.wandb_mode = a.wandb_mode or os.environ.get("WANDB_MODE", "online")
    a.wandb_dir = a.wandb_dir or a.run_dir
    a.tensorboard_dir = a.tensorboard_dir or os.path.join(a.run_dir, "tensorboard")
    a.eval_sets = list(zip(a.eval_prompt_data[0::2], a.eval_prompt_data[1::2])) if a.eval_prompt_data else []
    validate(a, rollout_samples)
    a.reward_config = reward_config_from_args(a)
    return a


def validate(a: argparse.Namespace, rollout_samples: int) -> None:
    problems = []
    tp, pp, cp = a.tensor_model_parallel_size, a.pipeline_model_parallel_size, a.context_parallel_size
    if a.actor_world_size % (tp * pp * cp):
        problems.append(f"actor ranks ({a.actor_num_nodes} x {a.actor_num_gpus_per_node}) are not divisible by TP x PP x CP = {tp * pp * cp}")
    if rollout_samples != a.global_batch_size * a.num_steps_per_rollout:
        problems.append(f"--rollout-batch-size x --n-samples-per-prompt = {rollout_samples} must equal --global-batch-size "
                        f"({a.global_batch_size}) x --num-steps-per-rollout ({a.num_steps_per_rollout})")
    if not a.eval_only and not a.prompt_data:
        problems.append("--prompt-data is required for training")
    if not a.eval_only and a.num_rollout is None and a.num_epoch is None:
        problems.append("give --num-rollout or --num-epoch")
    if a.eval_only and not a.eval_sets:
        problems.append("--eval-only needs --eval-prompt-data NAME PATH")
    if a.eval_prompt_data and len(a.eval_prompt_data) % 2:
        problems.append("--eval-prompt-data takes pairs: NAME PATH [NAME PATH ...]")
    if a.save_interval and not a.save:
        problems.append("--save-interval needs --save")
    if a.sglang_ep_size and (a.rollout_num_gpus_per_engine or 1) % a.sglang_ep_size:
        problems.append(f"--sglang-ep-size {a.sglang_ep_size} must divide --rollout-num-gpus-per-engine "
                        f"({a.rollout_num_gpus_per_engine})")
    if a.use_tis:
        try:
            tis_mode(a)
        except ValueError as e:
            problems.append(str(e))
    if a.colocate and not a.cpu and a.rollout_num_gpus and a.rollout_num_gpus > a.actor_world_size:
        problems.append("--colocate: --rollout-num-gpus cannot exceed the actor's GPUs")
    if not a.cpu and not a.colocate and not a.rollout_num_gpus:
        problems.append("disaggregated GPU placement needs --rollout-num-gpus (or use --colocate)")
    if a.update_weight_transport in ("distributed", "tensor") and pp > 1:
        problems.append(f"--update-weight-transport {a.update_weight_transport} sends from trainer rank 0, which holds one "
                        "pipeline stage only: use disk with PP > 1")
    if a.update_weight_transport in ("distributed", "tensor") and a.expert_model_parallel_size > 1:
        problems.append(f"--update-weight-transport {a.update_weight_transport} sends from trainer rank 0, which holds "
                        "1/EP of the experts: use disk with EP > 1")
    if a.update_weight_transport == "tensor" and not a.colocate:
        problems.append("--update-weight-transport tensor shares the trainer's memory with engines on the same devices: "
                        "it needs --colocate (use distributed or disk)")
    if a.update_weight_transport == "tensor" and a.num_engines * a.rollout_num_gpus_per_engine > a.actor_world_size:
        problems.append(f"--update-weight-transport tensor: {a.num_engines} engine(s) x {a.rollout_num_gpus_per_engine} "
                        f"GPU(s) need as many trainer ranks to share them with, there are {a.actor_world_size}")
    if a.update_weight_retries < 0:
        problems.append("--update-weight-retries must be >= 0")
    if a.cpu and cp > 1:
        problems.append("context parallelism needs transformer-engine on GPUs")
    else:
        try:
            resolve_attention(a.attention_backend, cp, on_gpu=not a.cpu, check_import=False)
        except ValueError as e:
            problems.append(str(e))
    try:
        loss_config(a).check()
    except ValueError as e:
        problems.append(str(e))
    config = os.path.join(a.hf_checkpoint, "config.json")
    if not os.path.isfile(config):
        problems.append(f"--hf-checkpoint {a.hf_checkpoint}: no config.json there")
    else:
        try:
            ParallelConfig(tp=tp, pp=pp, cp=cp, ep=a.expert_model_parallel_size, sequence_parallel=a.sequence_parallel,
                           etp=a.expert_tensor_parallel_size).check(ModelArch.from_hf_config(config), a.actor_world_size)
        except ValueError as e:
            problems.append(f"{config}: {e}")
    if problems:
        raise ValueError("invalid `longtrace train` flags:\n  " + "\n  ".join(problems))


def tis_mode(a: argparse.Namespace) -> str:
    """The correction --use-tis applies: --tis-mode, else the slime function named, else slime's default (clamp)."""
    named = {path: mode for mode, path in SLIME_TIS_FUNCTIONS.items()}
    path = a.custom_tis_function_path
    if path is not None and path not in named:
        raise ValueError(f"--custom-tis-function-path {path}: only slime's built-ins are understood here "
                         f"({', '.join(named)}); use --tis-mode {'|'.join(TIS_MODES)}")
    from_path = named.get(path)
    if a.tis_mode is not None and from_path is not None and a.tis_mode != from_path:
        raise ValueError(f"--tis-mode {a.tis_mode} contradicts --custom-tis-function-path {path} ({from_path})")
    return a.tis_mode or from_path or "tis"


def loss_config(a: argparse.Namespace) -> LossConfig:
    return LossConfig(
        eps_clip=a.eps_clip, eps_clip_high=a.eps_clip_high, eps_clip_c=a.eps_clip_c,
        kl_loss_coef=a.kl_loss_coef if a.use_kl_loss else 0.0, kl_loss_type=a.kl_loss_type, entropy_coef=a.entropy_coef,
        calculate_per_token_loss=a.calculate_per_token_loss, tis=tis_mode(a) if a.use_tis else None,
        tis_clip_low=a.tis_clip_low, tis_clip_high=a.tis_clip,
    )


def resolved_config(a: argparse.Namespace) -> dict:
    """Everything the run was launched with (printed at start, logged to wandb as its config)."""
    out = {k: v for k, v in vars(a).items() if k != "reward_config"}
    out["reward_config"] = a.reward_config.to_dict()
    out["loss_config"] = asdict(loss_config(a))
    return json.loads(json.dumps(out, default=str))


def sglang_server_args(a: argparse.Namespace) -> list[str]:
    """`sglang.launch_server` flags from slime's --sglang-* names, then --sglang-extra-args."""
    out = []
    if a.sglang_ep_size:
        out += ["--ep-size", str(a.sglang_ep_size)]
    if a.sglang_enable_fp32_lm_head:
        out.append("--enable-fp32-lm-head")
    return out + shlex.split(a.sglang_extra_args)
