"""The CPU portability shims megatron-core 0.16 needs to run without CUDA (tests, quickstart, CI). Nothing else.

On a GPU machine ``install()`` does nothing. On CPU it patches, once:

1. ``torch.cuda.current_device`` -> cpu (RoPE moves ``inv_freq`` to the current CUDA device);
2. the CUDA RNG tracker -> the CPU generator (attention dropout forks the model-parallel RNG state);
3. ``WrappedTorchNorm`` -> a plain torch norm whose parameters are tagged ``sequence_parallel`` (the local spec
   refuses sequence parallelism; Megatron's ``finalize_model_grads`` then all-reduces those grads over TP);
4. a ``TorchFunctionMode`` that maps ``device='cuda'`` / ``.cuda()`` / ``.to('cuda')`` to cpu and reports
   ``torch.cuda.*Tensor`` type strings, so Megatron's DDP and (distributed) optimizer run unchanged;
5. no-op ``torch.cuda.synchronize`` / ``empty_cache`` / ``manual_seed``;
6. loading a "fully reshardable" distributed-optimizer checkpoint into torch's Adam (used when neither
   transformer-engine nor apex is installed): megatron 0.16.1 skips the per-parameter ``step`` when reading
   the checkpoint but then copies every state key, ``step`` included, and fails; the patch copies the keys
   the checkpoint provides (``step`` is restored from the param groups, as megatron intends);
7. one dummy CUDA stream (``torch.cuda.Stream`` / ``current_stream`` / ``stream``): the MoE all-to-all token
   dispatcher moves its routing counts to the host on a side stream;
8. ``moe_utils.te_general_gemm = None`` without transformer-engine: megatron 0.16.1's router GEMM tests that
   name, which only exists when transformer-engine imports (the torch fallback right after it is then used);
9. the all-to-all token dispatcher's split sizes as host numpy arrays: megatron converts them to numpy only when
   they are CUDA tensors (``maybe_move_tensor_to_cpu``), and ``all_to_all_single`` rejects tensor split sizes,
   so expert parallelism (EP > 1, or expert-TP > 1) failed on CPU.

The explicit causal (or block-diagonal) attention mask that CPU callers pass avoids megatron's default mask,
which is built on ``device="cuda"``.
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

PATCHES: list[str] = []
_INSTALLED = False


def _patch(obj, name: str, value) -> None:
    PATCHES.append(f"{getattr(obj, '__name__', type(obj).__name__)}.{name}")
    setattr(obj, name, value)


def _is_cuda(device) -> bool:
    return (isinstance(device, str) and device.startswith("cuda")) or (
        isinstance(device, torch.device) and device.type == "cuda"
    )


class CudaToCpu(TorchFunctionMode):
    """Runs tensor code written for CUDA on the CPU (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            return func(*args).replace("torch.", "torch.cuda.", 1)  # megatron asserts on these strings
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs["device"] = "cpu"
        if func is torch.Tensor.to:
            args = tuple("cpu" if _is_cuda(a) else a for a in args)
        return func(*args, **kwargs)


def _sequence_parallel_torch_norm() -> None:
    import megatron.core.transformer.torch_norm as torch_norm

    def __new__(cls, config, hidden_size, eps=1e-5, persist_layer_norm=False, zero_centered_gamma=False,
                normalization="LayerNorm"):
        norm_cls = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}[config.normalization]
        norm = norm_cls(hidden_size, eps=eps)
        for p in norm.parameters():
            p.sequence_parallel = config.sequence_parallel
        return norm

    _patch(torch_norm.WrappedTorchNorm, "__new__", __new__)


def _optimizer_state_copy_known_keys() -> None:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    original = DistributedOptimizer._set_main_param_and_optimizer_states

    def _set_main_param_and_optimizer_states(self, model_param, tensors):
        if self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            return original(self, model_param, tensors)
        group_index, group_order = self.model_param_group_index_map[model_param]
        main_param = self.optimizer.param_groups[group_index]["params"][group_order]
        dst = {"param": main_param, **self.optimizer.state[main_param]}
        for key, value in tensors.items():
            dst[key].copy_(value)

    _patch(DistributedOptimizer, "_set_main_param_and_optimizer_states", _set_main_param_and_optimizer_states)


def _moe_splits_to_numpy() -> None:
    import megatron.core.transformer.moe.token_dispatcher as token_dispatcher

    original = token_dispatcher.maybe_move_tensor_to_cpu

    def maybe_move_tensor_to_cpu(tensor, as_numpy: bool = False, record_stream: bool = False):
        if as_numpy and torch.is_tensor(tensor) and not tensor.is_cuda:
            return tensor.numpy()
        return original(tensor, as_numpy=as_numpy, record_stream=record_stream)

    _patch(token_dispatcher, "maybe_move_tensor_to_cpu", maybe_move_tensor_to_cpu)


class _HostStream:
    """Stands in for every CUDA stream on CPU (one instance; ordering is already sequential)."""

    _instance = None

    def __new__(cls, *args, **kwargs):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def wait_stream(self, other) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, event=None) -> "_HostStream":
        return self  # an "event" that is always complete


_HOST_STREAM = _HostStream()  # a class, not a function: modules annotate with ``torch.cuda.Stream | None``


def install() -> None:
    """Apply the shims (idempotent). Call before building megatron models or optimizers."""
    global _INSTALLED
    if _INSTALLED or torch.cuda.is_available():
        return
    import megatron.core.tensor_parallel.random as tp_random

    _patch(torch.cuda, "current_device", lambda: torch.device("cpu"))
    _patch(torch.cuda, "synchronize", lambda *a, **k: None)
    _patch(torch.cuda, "empty_cache", lambda *a, **k: None)
    _patch(torch.cuda, "manual_seed", lambda seed: None)
    _patch(torch.cuda, "get_rng_state", lambda device="cuda": torch.get_rng_state())
    _patch(torch.cuda, "Stream", _HostStream)
    _patch(torch.cuda, "current_stream", lambda *a, **k: _HOST_STREAM)
    _patch(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    _patch(tp_random, "_get_cuda_rng_state", lambda *a, clone=False, **k: torch.get_rng_state())
    _patch(tp_random, "_set_cuda_rng_state", lambda state, *a, **k: torch.set_rng_state(state))
    _sequence_parallel_torch_norm()
    _optimizer_state_copy_known_keys()
    import megatron.core.transformer.moe.moe_utils as moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        _patch(moe_utils, "te_general_gemm", None)
    _moe_splits_to_numpy()
    CudaToCpu().__enter__()  # process-wide from here on
    _INSTALLED = True
