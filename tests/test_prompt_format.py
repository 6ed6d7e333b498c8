"""--prompt-format chat: training, generation and the FedDPA probe format prompts with the
tokenizer's own chat template; a model without one is refused in one sentence."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from fedrouter_cli.data.prompts import PROMPT_TEMPLATE, format_prompt
from fedrouter_cli.errors import FedrouterError


def _chat(tokenizer, instruction: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                         add_generation_prompt=True)


def test_chat_training_prompt_is_the_tokenizers_template(tokenizer) -> None:
    from fedrouter_cli.model.train import encode

    ids, labels = encode(tokenizer, "Name a colour.", "Blue.", 256, "chat")
    prompt_length = labels.count(-100)
    prompt = tokenizer.decode(ids[:prompt_length])
    assert prompt == _chat(tokenizer, "Name a colour.") and "<|im_start|>assistant" in prompt
    assert "### Instruction" not in prompt
    assert tokenizer.decode(ids[prompt_length:]) == "Blue." + tokenizer.eos_token  # loss on the answer only
    alpaca_ids, _ = encode(tokenizer, "Name a colour.", "Blue.", 256)
    assert tokenizer.decode(alpaca_ids).startswith(PROMPT_TEMPLATE.split("\n")[0])


def test_chat_generation_and_probe_prompts_are_the_tokenizers_template(tiny_lm, monkeypatch) -> None:
    import fedrouter_cli.model.generate as generate_module
    from fedrouter_cli.model.lora import get_adapter

    model, tokenizer, train = tiny_lm
    seen: list[list[str]] = []
    original = generate_module.encode_prompts

    def recording(tok, prompts, max_length):
        seen.append(list(prompts))
        return original(tok, prompts, max_length)

    monkeypatch.setattr(generate_module, "encode_prompts", recording)
    generate_module.generate(model, tokenizer, ["Say hi."], ["default"], max_new_tokens=2, prompt_format="chat")
    assert seen[-1] == [_chat(tokenizer, "Say hi.")]
    generate_module.generate(model, tokenizer, ["Say hi."], ["default"], max_new_tokens=2)
    assert seen[-1] == [format_prompt("Say hi.")]
    chat_train = replace(train, prompt_format="chat")
    generate_module.last_token_states(model, tokenizer, ["Say hi."], get_adapter(model), chat_train, max_length=64)
    assert seen[-1] == [_chat(tokenizer, "Say hi.")]


def test_a_model_without_a_chat_template_is_refused(tokenizer, tiny_model: str, smoke_copy: Path) -> None:
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    plain = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    with pytest.raises(FedrouterError, match="has no chat template|has none"):
        format_prompt("Say hi.", "chat", plain)

    model_dir = smoke_copy.parent / "no-template"
    shutil.copytree(tiny_model, model_dir)
    settings = json.loads((model_dir / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (model_dir / "tokenizer_config.json").write_text(json.dumps(settings))
    for extra in model_dir.glob("chat_template.*"):
        extra.unlink()
    result = CliRunner().invoke(app, ["simulate", "--run-dir", str(smoke_copy), "--model", str(model_dir),
                                      "--prompt-format", "chat"])
    assert result.exit_code == 2, result.output
    assert "needs a chat template" in result.output and "Traceback" not in result.output
    assert not (smoke_copy / "simulate").exists()
