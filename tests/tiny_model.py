"""A tiny randomly initialised causal LM of SmolLM2's family (Llama) with SmolLM2's tokenizer.

Plumbing tests (messages, resume, faults, deployment, each baseline's wire rule) pass its folder as
`--model PATH`, so it goes through the same loading code as any user model, while a training step
or a generated token costs next to nothing. The real SmolLM2 stays in the few tests that check
that learning happens.
"""

from __future__ import annotations

from pathlib import Path

HIDDEN = 32
LAYERS = 2


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write a 2-layer, 32-wide Llama with SmolLM2's tokenizer to `folder` (about 6 MB)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from fedrouter_cli.config import DEFAULT_MODEL
    from fedrouter_cli.model.loading import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, tie_word_embeddings=True, initializer_range=0.5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # random weights could pick a special token first, which decodes to an empty answer; a real
    # model answers in words, so the tiny one is kept to ordinary tokens (EOS included: it then
    # always writes max_new_tokens tokens)
    model.generation_config.suppress_tokens = sorted(set(tokenizer.all_special_ids)
                                                     | set(tokenizer.added_tokens_decoder))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
