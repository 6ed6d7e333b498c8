"""Where models run: the device and dtype behind --device auto|cpu|cuda, and GPU shares per client.

The choices are pure functions of what they depend on (is CUDA there, does the GPU do bf16, how
much GPU memory is free), so they are tested without a GPU; `resolve_device` and `free_gpu_bytes`
ask torch. The CPU placement is the one every function defaults to: fp32, tensors left where they
are, exactly the code path the tool had before GPUs were supported. torch is imported lazily, so
the config (which checks --device against DEVICES) stays cheap to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fedrouter_cli.config import DEVICES
from fedrouter_cli.errors import FedrouterError

# Embedding and generation batches are sized for 2 CPU cores; a GPU takes this many times more rows.
GPU_EMBED_BATCH_SCALE = 8
GPU_GENERATE_BATCH_SCALE = 4
# Activation memory of one decoder layer while training, per token and hidden unit, in values
# (about 34 bytes per token per hidden unit in 16-bit for a transformer block with a 4x MLP).
ACTIVATION_VALUES = 17
GPU_HEADROOM = 0.85  # share of a GPU's free memory the clients may plan to use


@dataclass(frozen=True)
class Placement:
    """Where the models of a process live, and in which dtype their weights and compute are."""

    device: str = "cpu"      # 'cpu' or 'cuda'
    dtype: str = "float32"   # 'float32' or 'bfloat16'

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def describe(self) -> dict[str, str]:
        return {"device": self.device, "dtype": self.dtype}


CPU = Placement()


def choose_placement(requested: str, cuda_available: bool, bf16_supported: bool) -> Placement:
    """'auto' is CUDA when available; on CUDA weights and compute are bf16 where the GPU supports
    it (fp32 otherwise); the CPU stays fp32, as bf16 is slower on CPUs without AMX."""
    if requested not in DEVICES:
        raise FedrouterError(f"--device must be one of {', '.join(DEVICES)}, got {requested!r}.")
    if requested == "cpu" or (requested == "auto" and not cuda_available):
        return CPU
    if not cuda_available:
        raise FedrouterError("--device cuda needs a CUDA GPU, and torch sees none on this machine "
                             "(no GPU, no driver, or a CPU-only torch build); pass --device cpu or auto.")
    return Placement("cuda", "bfloat16" if bf16_supported else "float32")


def resolve_device(requested: str) -> Placement:
    """The placement for this machine: asks torch whether CUDA is there and does bf16 natively."""
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    return choose_placement(requested, cuda, bf16)


def check_4bit(placement: Placement) -> None:
    if not placement.is_cuda:
        raise FedrouterError(
            "--load-in-4bit needs a CUDA GPU (and --device auto or cuda): bitsandbytes' NF4 training kernels "
            "are CUDA-only and on the CPU would be slower and possibly wrong; drop the flag to train in fp32.")


def model_device(model) -> Any:
    """The torch device a model's weights are on."""
    return next(model.parameters()).device


def to_model_device(batch, model):
    """`batch` (a dict of tensors or a tokenizer's BatchEncoding) on the model's device; on the CPU
    the batch itself, untouched."""
    device = model_device(model)
    if device.type == "cpu":
        return batch
    if hasattr(batch, "to"):
        return batch.to(device)
    return {key: value.to(device) for key, value in batch.items()}


def embed_batch_size(configured: int, placement: Placement) -> int:
    return configured * GPU_EMBED_BATCH_SCALE if placement.is_cuda else configured


def generate_batch_size(configured: int, placement: Placement) -> int:
    return configured * GPU_GENERATE_BATCH_SCALE if placement.is_cuda else configured


def weight_bytes(parameters: int, placement: Placement, load_in_4bit: bool = False) -> int:
    """GPU memory of a model's weights: NF4 is about half a byte a parameter (plus scales and the
    layers it leaves unquantized), bf16 two bytes, fp32 four."""
    if load_in_4bit:
        return int(parameters * 0.6)
    return parameters * (2 if placement.dtype == "bfloat16" else 4)


def client_gpu_bytes(weights: int, batch_size: int, max_length: int, hidden_size: int, layers: int,
                     placement: Placement) -> int:
    """What one training client needs on a GPU: its copy of the weights plus the activations that
    a batch of batch_size x max_length tokens keeps for the backward pass, with 20% slack."""
    value_bytes = 2 if placement.dtype == "bfloat16" else 4
    activations = batch_size * max_length * hidden_size * layers * ACTIVATION_VALUES * value_bytes
    return int(1.2 * (weights + activations))


def gpu_workers(clients: int, client_bytes: int, free_bytes: list[int], gpus_per_client: float = 0.0,
                workers: int = 0) -> tuple[int, float]:
    """How many clients train at once on the GPUs, and the GPU share each asks Flower/Ray for.

    free_bytes: free memory of each GPU. gpus_per_client 0 = auto: as many clients per GPU as
    their memory (client_bytes each) fits in the smallest GPU's free memory; otherwise the share
    given (0.25 = four clients per GPU; above 1, a whole number of GPUs). workers > 0 caps the count.
    """
    if not free_bytes:
        raise FedrouterError("No CUDA GPU is visible to size the clients by; pass --device cpu.")
    check_gpu_share(gpus_per_client)
    if gpus_per_client == 0:
        fits = max(1, min(clients, int(GPU_HEADROOM * min(free_bytes) // max(client_bytes, 1))))
        share = math.floor(10_000 / fits) / 10_000  # Ray accounts GPU shares to 4 decimals
    else:
        share = gpus_per_client
    at_once = max(1, int(len(free_bytes) / share + 1e-6))
    if workers > 0:
        at_once = min(at_once, workers)
    return max(1, min(at_once, clients)), share


def check_gpu_share(gpus_per_client: float, placement: Placement | None = None) -> None:
    """A GPU share is 0 (auto), a fraction of one GPU or a whole number of GPUs, and only on CUDA."""
    if gpus_per_client and placement is not None and not placement.is_cuda:
        raise FedrouterError("--gpus-per-client needs a CUDA GPU and this run is on the CPU; drop it, "
                             "or pass --device cuda on a machine with a GPU.")
    if not math.isfinite(gpus_per_client) or gpus_per_client < 0:
        raise FedrouterError(f"--gpus-per-client must be 0 (auto) or a positive share of a GPU, got {gpus_per_client}.")
    if gpus_per_client > 1 and not float(gpus_per_client).is_integer():
        raise FedrouterError(f"--gpus-per-client above 1 must be a whole number of GPUs, got {gpus_per_client}; "
                             "pass e.g. 0.5, 1 or 2.")


def free_gpu_bytes() -> list[int]:
    """Free memory of each visible CUDA GPU."""
    import torch

    return [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
