"""docker/Dockerfile: its pins agree with slime_ext/versions.py and setup.py, docker/README.md lists every one,
and every pip install runs against the frozen base-image constraints (so nothing can replace the image's torch).
The image itself cannot be built here (no Docker engine on the CPU machine): docker/README.md says so."""
from __future__ import annotations

import ast
import re

from .helpers import ROOT

DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
README = (ROOT / "docker" / "README.md").read_text()


def dockerfile_args() -> dict[str, str]:
    """Default values of every ARG (before and after FROM)."""
    return {m.group(1): m.group(2).strip('"') for m in re.finditer(r"^ARG (\w+)=(\S+)", DOCKERFILE, re.M)}


def setup_pins() -> dict[str, str]:
    """name -> version of every `name==version` requirement string in setup.py (f-strings resolved from
    slime_ext/versions.py, extras dropped from the name)."""
    from slime_ext import versions

    pins = {}
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    parts.append(v.value)
                else:  # f"...{_VERSIONS['SGLANG_VERSION']}"
                    key = v.value.slice.value
                    parts.append(getattr(versions, key))
            text = "".join(parts)
        if text and re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[^\]]*\])?==[A-Za-z0-9_.+\-]+", text):
            name, version = text.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return pins


def test_setup_pins_are_found():
    pins = setup_pins()
    for name in ("sglang", "sglang-router", "megatron-core", "transformer-engine", "flash-attn"):
        assert name in pins, f"setup.py no longer pins {name}: update this test and the Dockerfile"


def test_dockerfile_pins_agree_with_versions_py_and_setup_py():
    from slime_ext.versions import SGLANG_ROUTER_VERSION, SGLANG_VERSION

    args, pins = dockerfile_args(), setup_pins()
    assert args["SGLANG_VERSION"] == SGLANG_VERSION == pins["sglang"]
    assert args["SGLANG_IMAGE"] == f"lmsysorg/sglang:v{SGLANG_VERSION}"
    assert args["SGLANG_ROUTER_VERSION"] == SGLANG_ROUTER_VERSION == pins["sglang-router"]
    assert args["MEGATRON_CORE_VERSION"] == pins["megatron-core"]
    assert args["TRANSFORMER_ENGINE_VERSION"] == pins["transformer-engine"]
    assert args["FLASH_ATTN_VERSION"] == pins["flash-attn"]
    # any other package setup.py pins exactly (ray, wandb ... when they get pins) must agree too
    for arg, value in args.items():
        name = arg.removesuffix("_VERSION").lower().replace("_", "-")
        if arg.endswith("_VERSION") and name in pins:
            assert value == pins[name], f"Dockerfile {arg}={value} but setup.py pins {name}=={pins[name]}"


def test_readme_lists_every_pin():
    args = dockerfile_args()
    for arg, value in args.items():
        if arg.endswith("_VERSION") or arg == "SGLANG_IMAGE":
            assert value in README, f"docker/README.md does not mention {arg}={value}"
    assert "has not been built" in README  # says plainly that it was not built here


def test_every_pip_install_is_constrained_and_torch_is_never_installed():
    runs = re.findall(r"^RUN (.*?)(?=^\S|\Z)", DOCKERFILE, re.M | re.S)
    installs = [cmd for run in runs for cmd in run.split(";") if "pip install" in cmd]
    assert len(installs) >= 4
    for cmd in installs:
        assert '-c "$LONGTRACE_CONSTRAINTS"' in cmd, f"unconstrained pip install: {cmd.strip()}"
        assert not re.search(r"[\s\"']torch(vision|audio)?([=<>\"'\s]|$)", cmd), f"installs torch: {cmd.strip()}"
    # the constraints are the frozen base image, written before the first install
    freeze = DOCKERFILE.index("pip list --format=freeze")
    assert freeze < DOCKERFILE.index("python3 -m pip install")
    assert "base-torch-version" in DOCKERFILE.split("# 6.")[1]  # the final check compares torch with the base


def test_dockerignore_keeps_outputs_out_of_the_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs/", "models/"):
        assert entry in ignored
    # the files the build copies and installs are not ignored
    for needed in ("setup.py", "slime_ext", "reward", "data_gen"):
        assert needed not in ignored
