"""The one prompt template used for training and generation.

An instruction/response template in the style of the original FedRouter/Alpaca code. Training
puts loss only on the response tokens; embeddings use the raw instruction, without the template.
"""

from __future__ import annotations

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_prompt(instruction: str) -> str:
    return PROMPT_TEMPLATE.format(instruction=instruction.strip())
