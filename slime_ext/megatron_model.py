"""Megatron-core GPTModel built straight from a Hugging Face config.

Supported families (``model_type``): ``qwen3`` (q/k RMSNorm, GQA, RoPE, tied or untied embeddings), ``qwen2``
(QKV bias), ``qwen3_moe`` (routed experts, softmax top-k router; grouped GEMM with transformer-engine).

Layer spec: the transformer-engine spec when ``transformer_engine`` imports (production: fused kernels, flash /
cuDNN attention with THD packing, context parallelism), the local spec otherwise (CPU, tests: unfused attention
with an explicit block-diagonal causal mask).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("qwen3", "qwen2", "qwen3_moe")


def have_transformer_engine() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


@dataclass(frozen=True)
class ModelArch:
    """The architecture, read from an HF ``config.json``."""

    model_type: str
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rope_theta: float
    norm_eps: float
    tie_embeddings: bool
    qkv_bias: bool
    qk_norm: bool
    max_position_embeddings: int
    num_experts: int | None = None
    moe_topk: int | None = None
    moe_ffn_hidden_size: int | None = None
    moe_norm_topk_prob: bool = True

    @classmethod
    def from_hf_config(cls, config: dict | str | Path) -> "ModelArch":
        if not isinstance(config, dict):
            path = Path(config)
            path = path / "config.json" if path.is_dir() else path
            config = json.loads(path.read_text())
        model_type = config.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
        heads = config["num_attention_heads"]
        moe = model_type == "qwen3_moe"
        # transformers < 5 writes rope_theta / rope_scaling at the top level, >= 5 a rope_parameters dict
        rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", None):
            raise ValueError(f"RoPE scaling {rope_type!r} is not supported (only plain RoPE)")
        rope_theta = config.get("rope_theta", rope.get("rope_theta", 10000.0))
        if config.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {config.get('hidden_act')!r} is not supported (SwiGLU with silu only)")
        if config.get("use_sliding_window"):
            raise ValueError("sliding-window attention is not supported")
        return cls(
            model_type=model_type,
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            ffn_hidden_size=config["intermediate_size"],
            num_heads=heads,
            num_kv_heads=config.get("num_key_value_heads", heads),
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            vocab_size=config["vocab_size"],
            rope_theta=float(rope_theta),
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)),
            qk_norm=model_type in ("qwen3", "qwen3_moe"),
            max_position_embeddings=config.get("max_position_embeddings", 32768),
            num_experts=config.get("num_experts", config.get("num_local_experts")) if moe else None,
            moe_topk=config.get("num_experts_per_tok") if moe else None,
            moe_ffn_hidden_size=config.get("moe_intermediate_size") if moe else None,
            moe_norm_topk_prob=bool(config.get("norm_topk_prob", True)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def num_params(self) -> int:
        """Parameter count (embeddings counted once when tied)."""
        h, hd = self.hidden_size, self.head_dim
        attn = h * hd * (self.num_heads * 2 + self.num_kv_heads * 2)
        if self.qkv_bias:
            attn += hd * (self.num_heads + 2 * self.num_kv_heads)
        if self.qk_norm:
            attn += 2 * hd
        if self.num_experts:
            mlp = self.num_experts * 3 * h * self.moe_ffn_hidden_size + self.num_experts * h
        else:
            mlp = 3 * h * self.ffn_hidden_size
        per_layer = attn + mlp + 2 * h
        emb = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * per_layer + emb + h


@dataclass(frozen=True)
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    sequence_parallel: bool = False

    def check(self, arch: ModelArch, world_size: int) -> None:
        problems = []
        if world_size % (self.tp * self.pp * self.cp) != 0:
            problems.append(f"world size {world_size} is not divisible by tp*pp*cp = {self.tp * self.pp * self.cp}")
        if arch.num_kv_heads % self.tp != 0:
            problems.append(f"num_key_value_heads {arch.num_kv_heads} is not divisible by tp={self.tp}")
        if arch.num_heads % self.tp != 0:
            problems.append(f"num_attention_heads {arch.num_heads} is not divisible by tp={self.tp}")
        if arch.num_layers % self.pp != 0:
            problems.append(f"num_hidden_layers {arch.num_layers} is not divisible by pp={self.pp}")
        if self.sequence_parallel and self.tp == 1:
            problems.append("sequence parallelism needs tp > 1")
        if self.ep > 1 and not arch.num_experts:
            problems.append("expert parallelism (ep > 1) needs an MoE model")
        if arch.num_experts and arch.num_experts % self.ep != 0:
            problems.append(f"num_experts {arch.num_experts} is not divisible by ep={self.ep}")
        if problems:
            raise ValueError("invalid parallel layout:\n  " + "\n  ".join(problems))


def padded_vocab_size(vocab_size: int, tp: int, multiple: int = 128) -> int:
    """Vocab padded to a multiple of ``multiple * tp`` (each TP shard a multiple of ``multiple``)."""
    unit = multiple * tp
    return ((vocab_size + unit - 1) // unit) * unit


def transformer_config(
    arch: ModelArch,
    par: ParallelConfig,
    *,
    params_dtype: torch.dtype = torch.float32,
    use_te: bool | None = None,
    recompute: bool = False,
    **overrides: Any,
):
    from megatron.core.transformer import TransformerConfig

    use_te = have_transformer_engine() if use_te is None else use_te
    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_heads,
        num_query_groups=arch.num_kv_heads,
        kv_channels=arch.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=arch.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=arch.qkv_bias,
        qk_layernorm=arch.qk_norm,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        attention_softmax_in_fp32=True,
        params_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        tensor_model_parallel_size=par.tp,
        pipeline_model_parallel_size=par.pp,
        context_parallel_size=par.cp,
        expert_model_parallel_size=par.ep,
        sequence_parallel=par.sequence_parallel,
        variable_seq_lengths=True,  # packed micro-batches differ in length (pipeline p2p sends shapes first)
        moe_token_dispatcher_type="alltoall",  # megatron refuses variable lengths with its default dispatcher
        use_cpu_initialization=not on_gpu,
        gradient_accumulation_fusion=False,
        bias_activation_fusion=use_te,
        masked_softmax_fusion=use_te,
        bias_dropout_fusion=use_te,
        apply_rope_fusion=use_te,
        persist_layer_norm=use_te,
    )
    if par.pp > 1:
        kwargs["pipeline_dtype"] = params_dtype
    if recompute:
        kwargs.update(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    if arch.num_experts:
        kwargs.update(
            num_moe_experts=arch.num_experts,
            moe_router_topk=arch.moe_topk,
            moe_ffn_hidden_size=arch.moe_ffn_hidden_size,
            moe_router_score_function="softmax",
            # softmax over the top-k logits == top-k of the softmax renormalised (HF norm_topk_prob=True)
            moe_router_pre_softmax=not arch.moe_norm_topk_prob,
            moe_router_load_balancing_type="none",
            moe_aux_loss_coeff=0.0,
            moe_grouped_gemm=use_te,
            moe_router_dtype="fp32",
        )
    kwargs.update(overrides)
    return TransformerConfig(**kwargs)


def layer_spec(arch: ModelArch, use_te: bool):
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_te:
        return get_gpt_layer_with_transformer_engine_spec(
            num_experts=arch.num_experts, moe_grouped_gemm=bool(arch.num_experts), qk_layernorm=arch.qk_norm
        )
    return get_gpt_layer_local_spec(num_experts=arch.num_experts, qk_layernorm=arch.qk_norm, normalization="RMSNorm")


def build_gpt_model(arch: ModelArch, config, *, pre_process: bool = True, post_process: bool = True, use_te: bool | None = None):
    """A PolicyGPTModel for this pipeline stage (megatron's parallel state must be initialised)."""
    from megatron.core import parallel_state as ps

    use_te = have_transformer_engine() if use_te is None else use_te
    model = policy_model_class()(
        config=config,
        transformer_layer_spec=layer_spec(arch, use_te),
        vocab_size=padded_vocab_size(arch.vocab_size, ps.get_tensor_model_parallel_world_size()),
        max_sequence_length=arch.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=arch.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=arch.rope_theta,
        rotary_percent=1.0,
    )
    model.real_vocab_size = arch.vocab_size
    return model


def policy_model_class():
    """GPTModel whose forward returns response log-probs on the last pipeline stage (defined lazily so that
    importing this module does not import megatron)."""
    from megatron.core.models.gpt import GPTModel

    from .logprobs import response_logprobs

    class PolicyGPTModel(GPTModel):
        """GPTModel for RL: the forward runs embedding + decoder and, on the last stage, the output layer only at
        the positions that predict response tokens (chunked; see logprobs.py). Earlier stages return hidden states.

        Packed samples: with ``packed_seq_params`` (THD, transformer-engine) attention and RoPE restart at every
        sample; without it (local spec) the caller passes a block-diagonal causal ``attention_mask`` and RoPE is
        applied at ``position_ids`` (which restart at 0 for every sample).
        """

        real_vocab_size: int = 0

        def forward(self, input_ids, position_ids, attention_mask=None, packed_seq_params=None, *,
                    logit_positions=None, targets=None, chunk_size=4096, temperature=1.0, with_entropy=False):
            decoder_input, rotary_pos_emb = self._preprocess(
                input_ids=input_ids, position_ids=position_ids, packed_seq_params=packed_seq_params
            )[:2]
            if packed_seq_params is None:
                table = self.rotary_pos_emb(int(position_ids.max()) + 1)  # [L, 1, 1, dim]
                rotary_pos_emb = table[position_ids.reshape(-1)]
            hidden = self.decoder(hidden_states=decoder_input, attention_mask=attention_mask,
                                  rotary_pos_emb=rotary_pos_emb, packed_seq_params=packed_seq_params)
            if not self.post_process:
                return hidden
            weight = self.shared_embedding_or_output_weight() if self.share_embeddings_and_output_weights else self.output_layer.weight
            return response_logprobs(
                hidden, weight, logit_positions, targets, real_vocab=self.real_vocab_size or self.vocab_size,
                sequence_parallel=self.config.sequence_parallel, chunk_size=chunk_size, temperature=temperature,
                with_entropy=with_entropy,
            )

    return PolicyGPTModel
