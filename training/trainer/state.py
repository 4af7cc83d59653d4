"""Resumable run state without pickle: safetensors for tensors, JSON for everything else.

run_dir/state/
    model.safetensors      net.state_dict()
    optim.safetensors      every tensor of every optimizer's state, flattened to names
    state.json             epoch reached, backbone updates, history, config, optimizer scalars
Written to a temporary folder and swapped in with os.replace, so a crash mid-save leaves the
previous state intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_DIR = "state"


def flatten_optimizer(name: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """optimizer.state_dict() → ({key: tensor}, JSON-able rest).

    Tensors go to keys "{name}.{param_id}.{field}"; non-tensor entries and param_groups to JSON.
    """
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for field, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{pid}.{field}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[field] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict, meta: dict) -> dict:
    """Inverse of flatten_optimizer → a dict for optimizer.load_state_dict."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            pid, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[field] = value
    for pid, fields in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(fields)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(
    run_dir: Path,
    net: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    info: dict[str, Any],
) -> Path:
    """Writes run_dir/state atomically; info must be JSON-able (epoch, step, history, config)."""
    run_dir = Path(run_dir)
    tmp = run_dir / f"{STATE_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model_state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(model_state, str(tmp / "model.safetensors"))
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        tensors, meta = flatten_optimizer(name, opt)
        opt_tensors.update(tensors)
        opt_meta[name] = meta
    save_file(opt_tensors, str(tmp / "optim.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**info, "optimizers": opt_meta}, indent=1))
    final = run_dir / STATE_DIR
    old = run_dir / f"{STATE_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def has_state(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_DIR / "state.json").exists()


def load_state(
    run_dir: Path,
    net: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    """Restores net and optimizers in place; returns the info dict saved with them."""
    folder = Path(run_dir) / STATE_DIR
    info = json.loads((folder / "state.json").read_text())
    device = next(net.parameters()).device
    net.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    tensors = load_file(str(folder / "optim.safetensors"), device=str(device))
    for name, opt in optimizers.items():
        opt.load_state_dict(unflatten_optimizer(name, tensors, info["optimizers"][name]))
    return info
