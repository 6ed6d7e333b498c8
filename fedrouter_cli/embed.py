"""Sentence embeddings: the mean of a model's last hidden layer over the non-padding tokens."""

from __future__ import annotations

import numpy as np
import torch

from fedrouter_cli.model.device import to_model_device
from fedrouter_cli.progress import Progress, no_progress


@torch.inference_mode()
def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 256,
                normalize: bool = True, progress: Progress = no_progress) -> np.ndarray:
    """Embed `texts` in batches; returns float32 [len(texts), hidden].

    Texts are processed longest first so each batch pads to similar lengths (the padding would
    otherwise be most of the work), and the result is put back in input order.
    """
    if not texts:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    tokenizer.padding_side = "right"
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        batch = to_model_device(batch, model)
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        hidden = hidden.float()  # pool in fp32 when the model runs in bf16 (a no-op in fp32)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out[idx] = pooled.float().cpu().numpy()
        progress("embed", min(start + batch_size, len(order)), len(order))
    return out
