"""``longtrace convert`` against the checkpoint layout slime and megatron-LM read and write.

The contract, from slime's source (THUDM/slime at commit 624b824) and the megatron-LM code it calls
(megatron/training/checkpointing.py; not installed here, read from NVIDIA/Megatron-LM's main branch):

  slime/backends/megatron_utils/checkpoint.py  load_checkpoint: ``--load`` is a megatron checkpoint when
      ``DIR/latest_checkpointed_iteration.txt`` is a file, or DIR's name is ``iter_\\d{7}`` (_is_megatron_checkpoint);
      anything else goes to the HF loader. slime/utils/arguments.py (slime_validate_args) uses the same tracker file
      to tell --load / --ref-load apart (a folder with config.json and no tracker is HF).
  tools/convert_hf_to_torch_dist.py  megatron-LM's save_checkpoint, then the tracker set to "release" and the
      iteration folder renamed to ``release/``.
  megatron-LM read_metadata / get_checkpoint_name  the tracker holds an iteration number or "release"; the
      checkpoint is ``DIR/iter_{:07d}`` or ``DIR/release``, a torch_dist folder (metadata.json); common.pt holds
      "args" (argparse.Namespace), "checkpoint_version" (3.0), "iteration". load_checkpoint reads args'
      tensor_model_parallel_size, pipeline_model_parallel_size, no_save_optim, no_save_rng, and check_checkpoint_args
      compares num_layers, hidden_size, num_attention_heads, add_position_embedding with the run's.
      save_checkpoint unwraps DDP / Float16Module: tensor keys are GPTModel's own sharded keys (no "module."),
      layers stacked on a leading axis (singleton_local_shards False), optimizer state under "optimizer.*", RNG and
      rerun state under "rng_state" / "rerun_state_machine".
  tools/convert_torch_dist_to_hf.py  ``--input-dir`` is the checkpoint folder: ``torch.load(common.pt,
      weights_only=False)["args"]``; every tensor of .metadata whose key contains neither "optimizer" nor "_state" is
      a weight, renamed "module.module." + key; stacked layers (no layer number) are split with args.num_layers, and
      stacked experts (".experts.experts.") with args.num_experts; the megatron_to_hf converters read
      args.vocab_size (padding rows dropped), q_lora_rank, kv_channels, hidden_size, num_attention_heads,
      num_query_groups, and accept the names in QWEN_SUFFIXES below.

Megatron runs in a fresh process per layout (its parallel state is process-global). This file is also the worker
that writes a checkpoint the way slime's trainer saves one: ``python tests/test_convert_slime_layout.py slime-save``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRACKER = "latest_checkpointed_iteration.txt"

# args attributes slime's tools/convert_torch_dist_to_hf.py (+ megatron_to_hf) and megatron-LM's load_checkpoint /
# check_checkpoint_args read
SLIME_CONVERTER_ARGS = ("num_layers", "num_experts", "vocab_size", "q_lora_rank", "kv_channels", "hidden_size",
                        "num_attention_heads", "num_query_groups")
MEGATRON_LOAD_ARGS = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "no_save_optim", "no_save_rng",
                      "num_layers", "hidden_size", "num_attention_heads", "add_position_embedding")
# names slime's qwen2 / qwen3moe megatron_to_hf converters map (after "module.module.", per layer / expert)
QWEN_TOP = {"embedding.word_embeddings.weight", "output_layer.weight", "decoder.final_layernorm.weight"}
QWEN_SUFFIXES = {
    "self_attention.linear_proj.weight", "self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias",
    "self_attention.linear_qkv.layer_norm_weight", "self_attention.q_layernorm.weight",
    "self_attention.k_layernorm.weight", "mlp.linear_fc1.weight", "mlp.linear_fc2.weight",
    "mlp.linear_fc1.layer_norm_weight", "pre_mlp_layernorm.weight", "mlp.router.weight",
    "mlp.experts.linear_fc1.weight", "mlp.experts.linear_fc2.weight",  # + the expert number
}


def slime_takes_for_megatron(path: Path) -> bool:
    """slime's rule (checkpoint.py _is_megatron_checkpoint): otherwise --load is read as an HF model."""
    return (path / TRACKER).is_file() or re.fullmatch(r"iter_\d{7}", path.name) is not None


def megatron_checkpoint_folder(path: Path) -> Path:
    """megatron-LM's read_metadata + get_checkpoint_name(..., return_base_dir=True)."""
    text = (path / TRACKER).read_text().strip()
    return path / ("release" if text == "release" else f"iter_{int(text):07d}")


def converter_view(ckpt: Path) -> dict[str, torch.Size]:
    """The weights slime's torch_dist -> HF converter sees in a checkpoint folder: key -> global shape."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    seen = {k: v for k, v in meta.items() if "optimizer" not in k and "_state" not in k}
    assert all(isinstance(v, TensorStorageMetadata) for v in seen.values()), "non-tensor entries reach the converter"
    return {k: v.size for k, v in seen.items()}


def run(args: list[str], nproc: int = 1, timeout: int = 600) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")


def load_dir(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(d.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


@pytest.fixture(scope="module")
def converted_moe(family_checkpoint, tmp_path_factory):
    """``hf-to-mcore`` of the tiny MoE (vocab 1000, padded to 1024; untied; 4 experts)."""
    hf = family_checkpoint("qwen3_moe")
    out = tmp_path_factory.mktemp("mcore") / "qwen3-moe-mcore"
    run(["-m", "slime_ext.convert", "hf-to-mcore", "--hf", str(hf), "--out", str(out)])
    return hf, out


def test_hf_to_mcore_writes_the_layout_slime_and_megatron_read(converted_moe):
    hf, out = converted_moe
    config = json.loads((hf / "config.json").read_text())
    # slime loads it as a megatron checkpoint although config.json sits beside the tracker
    assert slime_takes_for_megatron(out) and (out / "config.json").exists()
    assert (out / TRACKER).read_text() == "release"
    ckpt = megatron_checkpoint_folder(out)
    assert ckpt == out / "release"
    assert json.loads((ckpt / "metadata.json").read_text())["sharded_backend"] == "torch_dist"
    assert (ckpt / ".metadata").exists() and list(ckpt.glob("*.distcp"))
    assert not list(out.glob("*.distcp")) and not (out / "common.pt").exists()  # everything under release/

    common = torch.load(ckpt / "common.pt", weights_only=False)  # as slime's converter loads it
    args = common["args"]
    assert isinstance(args, argparse.Namespace)
    missing = [a for a in SLIME_CONVERTER_ARGS + MEGATRON_LOAD_ARGS if not hasattr(args, a)]
    assert not missing, missing
    assert common["checkpoint_version"] == 3.0 and isinstance(common["iteration"], int)
    assert (args.num_layers, args.hidden_size, args.num_attention_heads, args.num_query_groups, args.kv_channels,
            args.vocab_size, args.num_experts) == (
        config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
        config["num_key_value_heads"], config["head_dim"], config["vocab_size"], config["num_local_experts"])
    assert args.q_lora_rank is None and args.add_position_embedding is True  # megatron's default, as slime's runs
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size) == (1, 1)
    assert args.no_save_optim and args.no_save_rng  # a release checkpoint: weights only

    # the weights as slime's converter sees and names them
    view = converter_view(ckpt)
    layers, experts = config["num_hidden_layers"], config["num_local_experts"]
    names = set()
    for key, shape in view.items():
        if ".layers." not in key:
            names.add(key)
            continue
        assert shape[0] == layers, key  # stacked layers, split with args.num_layers
        suffix = key.split(".layers.", 1)[1]
        if ".experts.experts." in suffix:
            assert shape[1] == experts, key  # stacked experts, split with args.num_experts
            suffix = suffix.replace(".experts.experts.", ".experts.")
        names.add(suffix)
    assert names <= QWEN_TOP | QWEN_SUFFIXES, names - QWEN_TOP - QWEN_SUFFIXES
    assert QWEN_TOP <= names and "mlp.experts.linear_fc1.weight" in names
    assert view["embedding.word_embeddings.weight"][0] == 1024  # padded; args.vocab_size gives the rows to keep


@pytest.mark.skipif(not os.environ.get("LONGTRACE_SLIME_SRC"), reason="set LONGTRACE_SLIME_SRC to a slime checkout "
                    "to run slime's own tools/convert_torch_dist_to_hf.py")
def test_slimes_own_converter_reads_hf_to_mcore_output(converted_moe, tmp_path):
    hf, out = converted_moe
    src = Path(os.environ["LONGTRACE_SLIME_SRC"])
    env = {**os.environ, "PYTHONPATH": str(src)}
    back = tmp_path / "back"
    proc = subprocess.run([sys.executable, str(src / "tools" / "convert_torch_dist_to_hf.py"), "--input-dir",
                           str(out / "release"), "--output-dir", str(back), "--origin-hf-dir", str(hf)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    original, restored = load_dir(hf), load_dir(back)
    assert original.keys() == restored.keys()
    assert all(original[k].dtype == restored[k].dtype and torch.equal(original[k], restored[k]) for k in original)


def test_a_slime_training_checkpoint_converts_back_bit_exactly(family_checkpoint, tmp_path):
    """A bf16 checkpoint after one training step, saved as slime's trainer saves it (tracker "12", iter_0000012/,
    optimizer, RNG and scheduler state beside the weights, an ``args`` pickle naming classes not importable here),
    exported by ``mcore-to-hf`` with the HF config of the model (a float32 config: the dtype comes from the
    checkpoint) equals the trainer's own HF export of the same weights, bit for bit."""
    hf = family_checkpoint("qwen3")
    save, expected, back = tmp_path / "slime-save", tmp_path / "expected", tmp_path / "back"
    run([__file__, "slime-save", "--model", str(hf), "--save", str(save), "--expected", str(expected),
         "--trainer-save", str(tmp_path / "ours" / "iter_0000012")])
    assert slime_takes_for_megatron(save) and not (save / "config.json").exists()
    ckpt = megatron_checkpoint_folder(save)
    assert ckpt.name == "iter_0000012"
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    assert any(k.startswith("optimizer.") for k in keys) and any(k.startswith("rng_state") for k in keys)

    run(["-m", "slime_ext.convert", "mcore-to-hf", "--mcore", str(save), "--hf-config", str(hf), "--out", str(back)])
    want, got = load_dir(expected), load_dir(back)
    assert want.keys() == got.keys() == load_dir(hf).keys()
    for k in want:
        assert got[k].dtype == torch.bfloat16 and torch.equal(want[k], got[k]), k
    assert (back / "config.json").exists() and (back / "tokenizer.json").exists()
    original = load_dir(hf)  # the step moved the weights: the export is the checkpoint's, not the HF start
    assert any(not torch.equal(original[k].bfloat16(), got[k]) for k in got)

    # the trainer's own checkpoints carry megatron's common.pt fields too (slime's converter reads them)
    common = torch.load(tmp_path / "ours" / "iter_0000012" / "common.pt", weights_only=False)
    assert all(hasattr(common["args"], a) for a in SLIME_CONVERTER_ARGS) and common["checkpoint_version"] == 3.0
    assert common["args"].bf16 and common["iteration"] == 1


def test_mcore_to_hf_asks_for_the_hf_config_of_a_checkpoint_without_one(tmp_path):
    from slime_ext.convert import _find_config

    ckpt = tmp_path / "save" / "iter_0000012"
    ckpt.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="--hf-config"):
        _find_config(tmp_path / "save", ckpt)
    (tmp_path / "save" / "config.json").write_text("{}")
    assert _find_config(ckpt, ckpt) == tmp_path / "save"  # OUT/release given: the config beside it


# ------------------------------------------------------------------------------------------------ worker
class NotImportableElsewhere:
    """Stands for the megatron-LM / slime classes a real ``args`` pickle names (``__main__`` only here)."""


def _slime_args(config: dict, world: int) -> argparse.Namespace:
    """The megatron-LM args fields the contract above names, as slime's Qwen3 model script sets them."""
    return argparse.Namespace(
        num_layers=config["num_hidden_layers"], hidden_size=config["hidden_size"],
        ffn_hidden_size=config["intermediate_size"], num_attention_heads=config["num_attention_heads"],
        group_query_attention=True, num_query_groups=config["num_key_value_heads"], kv_channels=config["head_dim"],
        vocab_size=config["vocab_size"], make_vocab_size_divisible_by=128, num_experts=None, q_lora_rank=None,
        add_position_embedding=True, position_embedding_type="rope", untie_embeddings_and_output_weights=True,
        tensor_model_parallel_size=1, pipeline_model_parallel_size=1, world_size=world, bf16=True,
        params_dtype=torch.bfloat16, ckpt_format="torch_dist", use_dist_ckpt=True, no_save_optim=False,
        no_save_rng=False, dist_ckpt_save_pre_mcore_014=True, rollout_hook=NotImportableElsewhere(),
    )


def _slime_save(model_dir: str, save: Path, expected: Path, trainer_save: Path) -> None:
    import torch.distributed as dist
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    from slime_ext.trainer import MegatronTrainer, OptimConfig, TrainerConfig
    from tests.megatron_worker import make_items

    trainer = MegatronTrainer(TrainerConfig(hf_checkpoint=model_dir, dtype="bf16", attention="sdpa",
                                            max_tokens_per_gpu=4096, optim=OptimConfig(lr=1e-3)))
    trainer.train_step(make_items(trainer.arch.vocab_size))
    trainer.export_hf(expected)
    trainer.save_checkpoint(trainer_save, {})
    # megatron-LM's save_checkpoint (generate_state_dict) on the unwrapped model, as slime calls it
    metadata = {"singleton_local_shards": False, "distrib_optim_sharding_type": "fully_reshardable"}
    iteration, world = 12, dist.get_world_size()
    state = {
        "args": _slime_args(json.loads((Path(model_dir) / "config.json").read_text()), world),
        "checkpoint_version": 3.0,
        "iteration": iteration,
        "model": trainer.unwrapped.sharded_state_dict(metadata=dict(metadata)),
    }
    state["optimizer"] = trainer.optimizer.sharded_state_dict(state, is_loading=False, metadata=dict(metadata))
    state["opt_param_scheduler"] = trainer.scheduler.state_dict()
    state["rng_state"] = ShardedObject("rng_state", {"torch": torch.get_rng_state()}, (world,), (dist.get_rank(),),
                                       replica_id=0)
    state["num_floating_point_operations_so_far"] = 0
    ckpt = save / f"iter_{iteration:07d}"
    if dist.get_rank() == 0:
        ckpt.mkdir(parents=True)
    dist.barrier()
    dist_checkpointing.save(state, str(ckpt), content_metadata=metadata)
    if dist.get_rank() == 0:
        (save / TRACKER).write_text(str(iteration))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["slime-save"])
    p.add_argument("--model", required=True)
    p.add_argument("--save", required=True, type=Path)
    p.add_argument("--expected", required=True, type=Path)
    p.add_argument("--trainer-save", required=True, type=Path)
    a = p.parse_args()
    _slime_save(a.model, a.save, a.expected, a.trainer_save)
