"""One Megatron trainer scenario per process (python or torchrun); rank 0 writes results for a test to compare.

    python tests/megatron_worker.py logprobs --model DIR --out DIR [--max-tokens N --chunk C --hf-reference
                                          --hf-without-rope-scaling --long-prompts N]
    torchrun --nproc_per_node 2 tests/megatron_worker.py train --model DIR --out DIR --tp 2 [--sp] [--pp 2] [--ep 2 --etp 1]
    python tests/megatron_worker.py ckpt --mode full|save|resume --ckpt DIR --model DIR --out DIR

Megatron's parallel state is process-global, so every layout runs in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch


def make_items(vocab: int, n: int = 8, seed: int = 0, rollout_logprobs: bool = False, prompt_len: tuple[int, int] = (3, 20)):
    from slime_ext.packing import TrainItem

    rng = random.Random(seed)
    items = []
    for _ in range(n):
        r = rng.randint(1, 12)
        items.append(TrainItem(
            prompt_tokens=[rng.randrange(vocab) for _ in range(rng.randint(*prompt_len))],
            response_tokens=[rng.randrange(vocab) for _ in range(r)],
            loss_mask=[1 if rng.random() < 0.85 else 0 for _ in range(r)],
            advantage=rng.uniform(-1, 1),
            rollout_logprobs=[-rng.uniform(4, 9) for _ in range(r)] if rollout_logprobs else None,
        ))
    return items


def head_errors() -> dict:
    """Max |log-prob error| against an fp64 reference, bf16 hidden states and weight with logits around 20-30:
    the trainer's head (fp32 matmul) and the bf16-logits computation it replaced."""
    import torch.nn.functional as F
    from megatron.core import parallel_state as ps

    from slime_ext.logprobs import response_logprobs
    from slime_ext.trainer import init_distributed

    init_distributed()
    ps.initialize_model_parallel()
    g = torch.Generator().manual_seed(0)
    hidden = (torch.randn(64, 1, 256, generator=g) * 2.0).bfloat16()
    weight = (torch.randn(1024, 256, generator=g) * 0.15).bfloat16()
    targets = torch.randint(0, 1024, (64,), generator=g)
    positions = torch.arange(64)
    exact = torch.log_softmax(hidden[:, 0].double() @ weight.double().T, -1)[positions, targets]
    ours, _ = response_logprobs(hidden, weight, positions, targets, real_vocab=1024, sequence_parallel=False, chunk_size=16)
    rounded = torch.log_softmax(F.linear(hidden[:, 0], weight).float(), -1)[positions, targets]
    logits = (hidden[:, 0].double() @ weight.double().T)
    return {"fp32_head": float((ours.double() - exact).abs().max()), "bf16_logits": float((rounded.double() - exact).abs().max()),
            "max_logit": float(logits.abs().max())}


def trainer_for(args):
    from slime_ext.loss import LossConfig
    from slime_ext.megatron_model import ParallelConfig
    from slime_ext.trainer import MegatronTrainer, TrainerConfig

    cfg = TrainerConfig(
        hf_checkpoint=args.model,
        parallel=ParallelConfig(tp=args.tp, pp=args.pp, ep=args.ep, etp=args.etp, sequence_parallel=args.sp),
        dtype=args.dtype, max_tokens_per_gpu=args.max_tokens, log_probs_chunk_size=args.chunk, attention=args.attention,
        loss=LossConfig(kl_loss_coef=args.kl_coef, kl_loss_type="low_var_kl", entropy_coef=args.entropy_coef, tis=args.tis,
                        calculate_per_token_loss=args.per_token_loss),
        mcore_checkpoint=args.mcore,
    )
    cfg.optim.lr = 1e-3
    # Adam's first step is ~lr * sign(grad): for elements whose gradient is ~0 its size hinges on the last bits of
    # the gradient, so layouts that agree to 1e-7 on gradients can differ by a few % of lr on such weights. A
    # large epsilon makes the update a smooth function of the gradient, which is what a layout comparison needs.
    cfg.optim.adam_eps = args.adam_eps
    return MegatronTrainer(cfg)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["logprobs", "train", "ckpt", "head"])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--sp", action="store_true")
    p.add_argument("--ep", type=int, default=1)
    p.add_argument("--etp", type=int, default=None)
    p.add_argument("--export", action="store_true", help="logprobs: also export the loaded weights to OUT/export")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--tis", choices=["tis", "icepop"])
    p.add_argument("--per-token-loss", action="store_true")
    p.add_argument("--adam-eps", type=float, default=1e-2)
    p.add_argument("--kl-coef", type=float, default=0.0)
    p.add_argument("--entropy-coef", type=float, default=0.0)
    p.add_argument("--mcore", help="start from this megatron checkpoint instead of the HF weights")
    p.add_argument("--hf-reference", action="store_true", help="also compute log-probs with HF transformers")
    p.add_argument("--hf-without-rope-scaling", action="store_true",
                   help="also compute HF log-probs of the same weights with plain RoPE (rope scaling removed)")
    p.add_argument("--long-prompts", type=int, default=None, metavar="N",
                   help="prompts of N to 2N tokens (instead of 3 to 20)")
    p.add_argument("--n-items", type=int, default=8, help="samples per batch")
    p.add_argument("--attention", default="local", help="te | sdpa | local (the layer spec's attention)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--distributed-optimizer", action="store_true")
    p.add_argument("--mode", choices=["full", "save", "resume"])
    p.add_argument("--ckpt")
    args = p.parse_args()

    import torch.distributed as dist

    if args.scenario == "head":  # the output layer of response_logprobs in bf16: fp32 head vs bf16 logits
        (args.out).mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(head_errors()))
        return
    trainer = trainer_for(args)
    vocab = trainer.arch.vocab_size
    result: dict = {}
    if args.scenario == "logprobs":
        items = make_items(vocab, prompt_len=(args.long_prompts, 2 * args.long_prompts) if args.long_prompts else (3, 20))
        result["max_position"] = max(len(it.prompt_tokens) + len(it.response_tokens) for it in items) - 1
        result["logprobs"], result["entropy"] = trainer.compute_logprobs(items, with_entropy=True)
        if args.export:
            trainer.export_hf(args.out / "export")
        if args.hf_reference and dist.get_rank() == 0:
            from transformers import AutoConfig, AutoModelForCausalLM

            def hf_logprobs(config=None):
                hf = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, config=config).eval()
                logprobs, entropy = [], []
                with torch.no_grad():
                    for it in items:
                        ids = torch.tensor([it.prompt_tokens + it.response_tokens])
                        logp_all = hf(ids).logits[0, len(it.prompt_tokens) - 1: -1].log_softmax(-1)
                        logprobs.append(logp_all.gather(-1, torch.tensor(it.response_tokens)[:, None])[:, 0].tolist())
                        entropy.append((-(logp_all.exp() * logp_all).sum(-1)).tolist())
                return logprobs, entropy

            result["hf_logprobs"], result["hf_entropy"] = hf_logprobs()
            if args.hf_without_rope_scaling:
                config = AutoConfig.from_pretrained(args.model)
                assert config.rope_parameters["rope_type"] != "default", "the model has no rope scaling to remove"
                config.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_parameters["rope_theta"]}
                result["hf_plain_logprobs"] = hf_logprobs(config)[0]
    elif args.scenario == "train":
        items = make_items(vocab, n=args.n_items, rollout_logprobs=args.tis is not None)
        result["logprobs_before"] = trainer.compute_logprobs(items)
        trainer.compute_gradients(items)
        trainer.export_hf(args.out / "grads", source="grad")
        result["metrics"] = trainer.train_step(items)
        result["logprobs_after"] = trainer.compute_logprobs(items)
        trainer.export_hf(args.out / "weights")
        if args.kl_coef:
            result["ref_logprobs"] = trainer.compute_ref_logprobs(items)
            result["logprobs_after_ref_pass"] = trainer.compute_logprobs(items)
            for it, ref in zip(items, result["ref_logprobs"]):
                it.ref_logprobs = ref
            result["metrics_kl"] = trainer.train_step(items)
    else:  # ckpt: three steps straight, or two + save, or resume + the third
        batches = [make_items(vocab, seed=s) for s in range(3)]
        losses = []
        if args.mode == "resume":
            result["extra"] = trainer.load_checkpoint(args.ckpt)
            result["step_after_load"] = trainer.step
            batches = batches[2:]
        elif args.mode == "save":
            batches = batches[:2]
        for b in batches:
            losses.append(trainer.train_step(b)["loss"])
        if args.mode == "save":
            trainer.save_checkpoint(args.ckpt, {"rollout_id": 2, "data_cursor": 16})
        result["losses"] = losses
    if dist.get_rank() == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
