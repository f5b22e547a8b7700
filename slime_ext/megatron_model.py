"""Megatron-core GPTModel built straight from a Hugging Face config.

Supported families (``model_type``): ``qwen3`` (q/k RMSNorm, GQA, RoPE, tied or untied embeddings), ``qwen2``
(QKV bias), ``qwen3_moe`` (routed experts, softmax top-k router; grouped GEMM with transformer-engine). RoPE: plain,
or YaRN scaling (``rope_type: yarn``, megatron's ``YarnRotaryEmbedding``; see ``YarnScaling``).

Layer spec, by attention backend (``resolve_attention``):
  te     transformer-engine (production GPUs: fused kernels, flash / cuDNN attention with THD packing, context
         parallelism). On a GPU it is required unless another backend is asked for: a failed import is an error
         that quotes the import's own exception, never a silent fallback.
  sdpa   megatron's local spec with ``attention.SDPAttention``: PyTorch's fused attention per packed sample (THD),
         no [T, T] mask; the CPU default, and GPUs without transformer-engine (no context parallelism).
  local  megatron's local spec: unfused attention with an explicit block-diagonal causal mask (short packed
         micro-batches only: the trainer caps them at 512 tokens).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("qwen3", "qwen2", "qwen3_moe")
SUPPORTED_ROPE_TYPES = ("default", "yarn")


ATTENTION_BACKENDS = ("auto", "te", "sdpa", "local")


def transformer_engine_import_error() -> str | None:
    """None when transformer_engine imports, else the exception it raised (an ABI mismatch with torch is common)."""
    try:
        import transformer_engine  # noqa: F401
    except Exception as e:  # noqa: BLE001 (any import failure is the answer)
        return f"{type(e).__name__}: {e}"
    return None


def have_transformer_engine() -> bool:
    if transformer_engine_import_error() is not None:
        return False
    return torch.cuda.is_available()


def resolve_attention(requested: str, cp: int = 1, on_gpu: bool | None = None, check_import: bool = True) -> str:
    """The attention backend to build with: ``auto`` is transformer-engine on GPUs (an error, quoting the import
    failure, when it does not import) and sdpa on CPUs. ``check_import=False`` checks the combination only (the
    driver that validates flags need not be a machine with transformer-engine: the trainer ranks check on theirs)."""
    if requested not in ATTENTION_BACKENDS:
        raise ValueError(f"--attention-backend must be one of {', '.join(ATTENTION_BACKENDS)}, got {requested!r}")
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    resolved = requested if requested != "auto" else ("te" if on_gpu else "sdpa")
    if resolved == "te" and check_import:
        why = transformer_engine_import_error() if on_gpu else "transformer-engine runs on GPUs only"
        if why:
            hint = ("--attention-backend sdpa (PyTorch's fused attention, no context parallelism) or local" if on_gpu
                    else "--attention-backend sdpa or local")
            raise ValueError(f"transformer-engine cannot be used ({why}); fix the install, or choose {hint}")
    if cp > 1 and resolved != "te":
        raise ValueError(f"context parallelism needs --attention-backend te (got {resolved})")
    return resolved


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's magnitude scale 0.1 * mscale * ln(scale) + 1 (1 when scale <= 1): the same formula in transformers'
    ``_compute_yarn_parameters``, megatron's ``_yarn_get_mscale`` and SGLang's ``_yarn_get_mscale``."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


@dataclass(frozen=True)
class YarnScaling:
    """YaRN RoPE scaling, resolved from an HF config (``YarnScaling.from_hf``).

    The inverse frequencies blend interpolated (divided by ``factor``) and original frequencies with a linear ramp
    over the dimensions between the correction range of ``beta_fast`` / ``beta_slow`` rotations in
    ``original_max_position_embeddings`` positions (bounds rounded outwards when ``truncate``); cos and sin are
    multiplied by ``attention_factor``. ``mscale`` / ``mscale_all_dim`` are the values given to megatron's
    ``yarn_mscale`` / ``yarn_mscale_all_dim`` so that its concentration factor equals ``attention_factor``.
    """

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    truncate: bool = True
    attention_factor: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None

    # keys of an HF yarn rope dict: transformers' (factor ... truncate) and SGLang / vLLM's (attn_factor,
    # extrapolation_factor), which transformers ignores
    KEYS = frozenset({"rope_type", "type", "rope_theta", "partial_rotary_factor", "factor", "original_max_position_embeddings",
                      "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "truncate", "attn_factor",
                      "extrapolation_factor"})

    @classmethod
    def from_hf(cls, config: dict, rope: dict) -> "YarnScaling":
        """Resolve the YaRN parameters as transformers' ``_compute_yarn_parameters`` does, plus SGLang's
        ``attn_factor`` (the rollout engine multiplies its default attention factor by it; transformers ignores the
        key). Combinations on which transformers and SGLang would disagree, or that megatron cannot express, are
        refused."""
        where = "rope_parameters" if config.get("rope_parameters") else "rope_scaling"
        unknown = sorted(set(rope) - cls.KEYS)
        if unknown:
            raise ValueError(f"{where}: YaRN key(s) {unknown} are not supported")
        max_pos = config.get("max_position_embeddings")
        # transformers gives a top-level original_max_position_embeddings priority over the rope dict's (Phi-3);
        # SGLang reads the rope dict's only: refuse a disagreement
        top, inner = config.get("original_max_position_embeddings"), rope.get("original_max_position_embeddings")
        if top is not None and inner is not None and top != inner:
            raise ValueError(f"original_max_position_embeddings {top} (top level) and {where}.original_max_position_embeddings "
                             f"{inner} disagree")
        original = top if top is not None else inner if inner is not None else max_pos
        if not isinstance(original, int) or original <= 0:
            raise ValueError(f"{where}.original_max_position_embeddings must be a positive integer, got {original!r}")
        if "factor" not in rope:
            raise ValueError(f"{where}.factor is required for rope_type 'yarn'")
        factor = rope["factor"]
        if factor is None:  # transformers: the ratio of the context lengths (DeepSeek-V3 style configs)
            factor = max_pos / original
        if not isinstance(factor, (int, float)) or factor < 1:
            raise ValueError(f"{where}.factor must be a number >= 1, got {factor!r}")
        factor = float(factor)
        beta_fast = float(rope.get("beta_fast") or 32)  # transformers: a missing, null or 0 beta takes the default
        beta_slow = float(rope.get("beta_slow") or 1)
        truncate = bool(rope.get("truncate", True))
        if rope.get("extrapolation_factor", 1) != 1:
            raise ValueError(f"{where}.extrapolation_factor {rope['extrapolation_factor']!r} is not supported (only 1: "
                             "neither transformers nor megatron-core has it)")
        attention_factor, mscale, mscale_all_dim = rope.get("attention_factor"), rope.get("mscale"), rope.get("mscale_all_dim")
        attn_factor = rope.get("attn_factor")
        if attn_factor is not None:
            clash = [k for k in ("attention_factor", "mscale", "mscale_all_dim") if rope.get(k) is not None]
            if clash:
                raise ValueError(f"{where}: attn_factor (SGLang's) together with {clash} (transformers') is ambiguous: "
                                 "the two compute different attention factors")
        base = cls(factor, original, beta_fast, beta_slow, truncate)
        if attention_factor is None and attn_factor is None:
            if mscale and mscale_all_dim:  # transformers tests truthiness; megatron computes the same ratio from these
                a = yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)
                yarn = replace(base, attention_factor=a, mscale=float(mscale), mscale_all_dim=float(mscale_all_dim))
            else:  # megatron with yarn_mscale(_all_dim) None: yarn_get_mscale(factor), as transformers
                yarn = replace(base, attention_factor=yarn_get_mscale(factor))
        else:
            a = float(attention_factor) if attention_factor is not None else yarn_get_mscale(factor) * float(attn_factor)
            if not a > 0:
                raise ValueError(f"{where}: the attention factor must be > 0, got {a!r}")
            # megatron's concentration factor is yarn_get_mscale(f, mscale) / yarn_get_mscale(f, mscale_all_dim):
            # with mscale_all_dim = 0 the denominator is 1 and mscale = (a - 1) / (0.1 ln f) gives a
            if factor <= 1 and a != 1:
                raise ValueError(f"{where}: attention factor {a} with factor {factor}: megatron-core's YaRN scales "
                                 "attention only when factor > 1")
            m = (a - 1.0) / (0.1 * math.log(factor)) if factor > 1 else 0.0
            got = yarn_get_mscale(factor, m) / yarn_get_mscale(factor, 0.0)
            if abs(got - a) > 1e-12 * a:
                raise ValueError(f"{where}: attention factor {a} cannot be expressed with megatron-core's YaRN ({got})")
            yarn = replace(base, attention_factor=a, mscale=m, mscale_all_dim=0.0)
        if attn_factor is None and yarn.attention_factor != yarn_get_mscale(factor):
            # SGLang's `yarn` ignores attention_factor / mscale / mscale_all_dim: its factor is
            # yarn_get_mscale(factor) * attn_factor, so the rollout would use another attention scale
            warnings.warn(f"{where}: attention factor {yarn.attention_factor} from attention_factor / mscale / "
                          f"mscale_all_dim (as transformers computes it); SGLang's YaRN ignores those keys and would use "
                          f"{yarn_get_mscale(factor)}: trainer and rollout log-probs may differ", stacklevel=3)
        return yarn

    def megatron_attributes(self) -> dict[str, Any]:
        """The ``yarn_*`` attributes megatron-core 0.16.1 reads (getattr) from the TransformerConfig."""
        return dict(
            yarn_rotary_scaling_factor=self.factor,
            yarn_original_max_position_embeddings=self.original_max_position_embeddings,
            yarn_beta_fast=self.beta_fast,
            yarn_beta_slow=self.beta_slow,
            yarn_mscale=self.mscale,
            yarn_mscale_all_dim=self.mscale_all_dim,
            yarn_correction_range_round_to_int=self.truncate,
        )


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
    yarn: YarnScaling | None = None  # YaRN RoPE scaling; None: plain RoPE

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
        rope_type = rope.get("rope_type", rope.get("type")) or "default"
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(f"RoPE scaling {rope_type!r} is not supported (supported rope_type: {', '.join(SUPPORTED_ROPE_TYPES)})")
        # transformers 5 takes the rope dict's rope_theta over a top-level one (it only writes the former)
        rope_theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
        if partial not in (None, 1, 1.0):
            raise ValueError(f"partial_rotary_factor {partial!r} is not supported (RoPE over the whole head only)")
        yarn = YarnScaling.from_hf(config, rope) if rope_type == "yarn" else None
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
            yarn=yarn,
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
    etp: int | None = None  # expert tensor parallelism; None: the experts follow tp (megatron's default)

    @property
    def expert_tp(self) -> int:
        return self.tp if self.etp is None else self.etp

    def check(self, arch: ModelArch, world_size: int, training: bool = True) -> None:
        problems = []
        for name in ("tp", "pp", "cp", "ep", "expert_tp"):
            if getattr(self, name) < 1:
                problems.append(f"{'etp' if name == 'expert_tp' else name}={getattr(self, name)} must be >= 1")
        if problems:
            raise ValueError("invalid parallel layout:\n  " + "\n  ".join(problems))
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
        if self.etp is not None and self.etp != self.tp and not arch.num_experts:
            problems.append(f"expert tensor parallelism (etp={self.etp}) needs an MoE model")
        if arch.num_experts:
            # megatron lays the expert part out as ETP x EP x expert-DP x PP over the same ranks
            etp_ep_pp = self.expert_tp * self.ep * self.pp
            if world_size % etp_ep_pp != 0:
                problems.append(f"world size {world_size} is not divisible by etp*ep*pp = {self.expert_tp}*{self.ep}*{self.pp} "
                                f"= {etp_ep_pp} (megatron's expert layout; etp defaults to tp)")
            if arch.moe_ffn_hidden_size and arch.moe_ffn_hidden_size % self.expert_tp != 0:
                problems.append(f"moe_intermediate_size {arch.moe_ffn_hidden_size} is not divisible by etp={self.expert_tp}")
            if training and self.tp > 1 and not self.sequence_parallel:
                problems.append("an MoE model with tp > 1 needs sequence parallelism (megatron refuses to train without)")
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
        expert_tensor_parallel_size=par.etp,  # None: megatron sets it to tp
        sequence_parallel=par.sequence_parallel,
        variable_seq_lengths=True,  # packed micro-batches differ in length (pipeline p2p sends shapes first)
        moe_token_dispatcher_type="alltoall",  # megatron refuses variable lengths with its default dispatcher
        use_cpu_initialization=not on_gpu,
        gradient_accumulation_fusion=False,
        bias_activation_fusion=use_te,
        masked_softmax_fusion=use_te,
        bias_dropout_fusion=use_te,
        # TE's fused RoPE has no YaRN attention factor: megatron falls back to the unfused kernel in the bshd layout
        # but its fused THD kernel (packed sequences) silently drops the factor, so it is off for such models
        apply_rope_fusion=use_te and (arch.yarn is None or arch.yarn.attention_factor == 1.0),
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
    config = TransformerConfig(**kwargs)
    if arch.yarn is not None:
        # not TransformerConfig fields: GPTModel(position_embedding_type="yarn") and the attention's concentration
        # factor (_yarn_get_concentration_factor_from_config) read them with getattr
        for name, value in arch.yarn.megatron_attributes().items():
            setattr(config, name, value)
    return config


def layer_spec(arch: ModelArch, attention: str | bool):
    """The decoder layer spec of a backend (te | sdpa | local; a bool is the older use_te flag)."""
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if attention is True or attention == "te":
        return get_gpt_layer_with_transformer_engine_spec(
            num_experts=arch.num_experts, moe_grouped_gemm=bool(arch.num_experts), qk_layernorm=arch.qk_norm
        )
    spec = get_gpt_layer_local_spec(num_experts=arch.num_experts, qk_layernorm=arch.qk_norm, normalization="RMSNorm")
    if attention == "sdpa":
        from .attention import SDPAttention

        spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_gpt_model(arch: ModelArch, config, *, pre_process: bool = True, post_process: bool = True,
                    use_te: bool | None = None, attention: str | None = None):
    """A PolicyGPTModel for this pipeline stage (megatron's parallel state must be initialised). ``attention``
    (te | sdpa | local) picks the layer spec; without it ``use_te`` does (te or local), as before."""
    from megatron.core import parallel_state as ps

    if attention is None:
        attention = "te" if (have_transformer_engine() if use_te is None else use_te) else "local"
    if arch.yarn is not None and getattr(config, "yarn_rotary_scaling_factor", None) != arch.yarn.factor:
        raise ValueError("a YaRN model needs the TransformerConfig from transformer_config() (yarn_* attributes)")
    model = policy_model_class()(
        config=config,
        transformer_layer_spec=layer_spec(arch, attention),
        vocab_size=padded_vocab_size(arch.vocab_size, ps.get_tensor_model_parallel_world_size()),
        max_sequence_length=arch.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=arch.tie_embeddings,
        position_embedding_type="yarn" if arch.yarn is not None else "rope",
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
                if isinstance(table, tuple):
                    # YarnRotaryEmbedding returns (angles, concentration factor); the attention applies the factor
                    # itself (from the config), as after GPTModel._preprocess
                    table = table[0]
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
