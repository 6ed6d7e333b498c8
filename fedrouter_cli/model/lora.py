"""LoRA adapters as plain arrays: build the PEFT model once, then swap weights in and out.

Only LoRA weights ever move between server and clients; they are keyed the way PEFT saves them
(`...q_proj.lora_A.weight`), so any saved set loads with `PeftModel.from_pretrained`.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from fedrouter_cli.config import TrainConfig
from fedrouter_cli.errors import CorruptArtifactError
from fedrouter_cli.model.device import CPU, Placement
from fedrouter_cli.model.loading import load_causal_lm, model_reference

Adapter = dict[str, np.ndarray]


def lora_config(train: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
                      target_modules=list(train.target_modules), bias="none", task_type="CAUSAL_LM")


def with_rank(train: TrainConfig, weights: Adapter) -> TrainConfig:
    """LoRA settings for weights whose rank may differ from --lora-r, keeping the scale alpha/r."""
    from dataclasses import replace

    rank = next(v.shape[0] for k, v in weights.items() if "lora_A" in k)
    return replace(train, lora_r=rank, lora_alpha=round(train.lora_alpha * rank / train.lora_r))


def lora_key(train: TrainConfig) -> tuple:
    return (train.lora_r, train.lora_alpha, train.lora_dropout, tuple(train.target_modules))


@functools.lru_cache(maxsize=2)
def _peft_model(model_name: str, load_in_4bit: bool, key: tuple, placement: Placement):
    from peft import get_peft_model

    r, alpha, dropout, targets = key
    base, tokenizer = load_causal_lm(model_name, load_in_4bit, placement)
    if load_in_4bit:  # QLoRA: norms and other unquantized weights in fp32 for stable training
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    train = TrainConfig(lora_r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    return get_peft_model(base, lora_config(train)), tokenizer


def peft_model(model_name: str, train: TrainConfig, load_in_4bit: bool = False, placement: Placement = CPU):
    """The process's one PEFT-wrapped base model (adapter 'default'), and its tokenizer, on `placement`
    (the CPU in fp32 unless told otherwise)."""
    return _peft_model(model_name, bool(load_in_4bit), lora_key(train), placement)


def get_adapter(model, adapter_name: str = "default") -> Adapter:
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return {k: v.detach().cpu().float().numpy().copy() for k, v in state.items()}


def set_adapter_weights(model, adapter: Adapter, adapter_name: str = "default") -> None:
    from peft import set_peft_model_state_dict

    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in adapter.items()}
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", [])
    if [k for k in unexpected if "lora_" in k]:
        raise ValueError(f"adapter keys do not fit the model: {unexpected[:3]}")


COMPANION = "companion"


@contextlib.contextmanager
def companion_adapter(model, weights: Adapter, train: TrainConfig, name: str = COMPANION):
    """Within the block, a second adapter with `weights` is active beside 'default' (their LoRA
    updates add up in every forward pass) and frozen: train_steps(..., adapter='default') trains
    'default' only. FedDPA trains its local adapter this way, on top of the frozen global one."""
    model.add_adapter(name, lora_config(train))
    try:
        set_adapter_weights(model, weights, adapter_name=name)
        model.base_model.set_adapter(["default", name])  # PEFT's multi-adapter activation (LoRA sums them)
        for param_name, param in model.named_parameters():
            if f".{name}." in param_name:
                param.requires_grad_(False)
        yield
    finally:
        model.base_model.set_adapter("default")
        model.delete_adapter(name)


@contextlib.contextmanager
def scaled_adapter(model, factor: float, name: str = "default"):
    """Within the block, adapter `name`'s LoRA update counts `factor` times in every forward pass
    (its alpha/r scale times `factor`); its weights and their gradients' direction are unchanged."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and name in m.scaling]
    before = [m.scaling[name] for m in layers]
    for layer in layers:
        layer.scaling[name] = layer.scaling[name] * factor
    try:
        yield
    finally:
        for layer, value in zip(layers, before):
            layer.scaling[name] = value


def scaled_b(adapter: Adapter, factor: float) -> Adapter:
    """The adapter whose update B@A is `factor` times the given one's (B scaled, A kept)."""
    return {k: (v * np.float32(factor) if "lora_B" in k else v) for k, v in adapter.items()}


def initial_adapter(model_name: str, train: TrainConfig, seed: int) -> Adapter:
    """A freshly initialised adapter (lora_A random, lora_B zero), reproducible from `seed`."""
    model, _ = peft_model(model_name, train)
    generator = torch.Generator().manual_seed(seed)
    adapter = get_adapter(model)
    for key, value in adapter.items():
        if "lora_A" in key:
            # Kaiming-uniform bound as PEFT uses, drawn from our own seeded generator.
            bound = 1.0 / np.sqrt(value.shape[1])
            adapter[key] = ((torch.rand(value.shape, generator=generator) * 2 - 1) * bound).numpy()
        else:
            adapter[key] = np.zeros_like(value)
    return adapter


def select(adapter: Adapter, part: str) -> Adapter:
    """The LoRA weights of one part ('lora_A', 'lora_B') or all of them ('all')."""
    if part == "all":
        return dict(adapter)
    return {k: v for k, v in adapter.items() if part in k}


def average(adapters: list[Adapter], weights: list[float]) -> Adapter:
    """Weighted mean of adapters with the same keys."""
    total = float(sum(weights))
    return {key: (sum(w * a[key].astype(np.float64) for a, w in zip(adapters, weights)) / total).astype(np.float32)
            for key in adapters[0]}


def save_adapter(folder: Path, adapter: Adapter, train: TrainConfig, base_model: str) -> None:
    """A PEFT-loadable adapter folder: adapter_model.safetensors + adapter_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in adapter.items()},
              str(folder / "adapter_model.safetensors"))
    config = lora_config(train).to_dict()
    config["base_model_name_or_path"] = model_reference(base_model)
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, default=str))


def load_adapter(folder: Path) -> Adapter:
    path = folder / "adapter_model.safetensors"
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CorruptArtifactError(f"{path} is missing; rerun `fedrouter simulate`.") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CorruptArtifactError(f"{path} cannot be read ({exc.__class__.__name__}); rerun `fedrouter simulate --force`.") from None
