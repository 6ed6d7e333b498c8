"""How an instruction becomes the prompt a model trains on and answers: one rule for training,
generation and the FedDPA probe.

alpaca (the default): an instruction/response template in the style of the original
FedRouter/Alpaca code. chat: the tokenizer's own chat template (`apply_chat_template`, one user
turn and the assistant's opening), for instruction-tuned models trained on it. Training puts loss
only on the response tokens; embeddings use the raw instruction, without any template.
"""

from __future__ import annotations

from fedrouter_cli.errors import FedrouterError

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_prompt(instruction: str, prompt_format: str = "alpaca", tokenizer=None) -> str:
    if prompt_format == "chat":
        check_chat_template(tokenizer)
        return tokenizer.apply_chat_template([{"role": "user", "content": instruction.strip()}], tokenize=False,
                                             add_generation_prompt=True)
    return PROMPT_TEMPLATE.format(instruction=instruction.strip())


def check_prompt_format(prompt_format: str, tokenizer, model: str = "") -> None:
    """Refuse, before any work, a prompt format the model's tokenizer cannot render."""
    if prompt_format == "chat":
        check_chat_template(tokenizer, model)


def check_chat_template(tokenizer, model: str = "") -> None:
    """--prompt-format chat needs a tokenizer that has a chat template."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = model or getattr(tokenizer, "name_or_path", "") or "the model"
        raise FedrouterError(f"--prompt-format chat needs a chat template, and {name}'s tokenizer has none; "
                             "use --prompt-format alpaca or an instruction-tuned model.")


def prompt_key(instruction: str, prompt_format: str) -> str:
    """What identifies a prompt in the generation cache without loading a tokenizer: the alpaca text
    itself (as keys were before chat existed), or the instruction marked as a chat prompt (the
    model, and so its template, is in the key beside it)."""
    return format_prompt(instruction) if prompt_format == "alpaca" else f"chat\x00{instruction.strip()}"
