"""The paper's training and generation shapes on one CUDA GPU, each against a bare pass of the same shapes.

Prints one JSON object:
- train.<precision>: LoRA training (`fedrouter_cli.model.train.train_steps`, q,v LoRA r 8, AdamW)
  tokens/s and peak GPU memory at batch 16 x 1024 tokens, in bf16 (fp32 on GPUs without native
  bf16) and in 4-bit NF4 (QLoRA, when bitsandbytes is importable), against a bare forward/backward
  + AdamW step of the same LoRA model on the same shapes (the model's own loss over every position).
- generate: greedy generation samples/s with mixed adapters (`fedrouter_cli.model.generate.generate`,
  four LoRA adapters mixed in every batch), against the bare `model.generate` of the base model on
  the same prompts and batches. Both always generate --new-tokens tokens (end-of-sequence disabled).

Needs only torch, transformers, peft, safetensors and this repository: no Flower, no Ray, no
downloads. Without --model it builds a random model of the Llama architecture from a config
(about 400 M parameters with the defaults) and a word-level tokenizer, and feeds them random
words. About 3-5 minutes on one recent GPU. Run from the repository root:

    python bench/gpu_check.py                     # random Llama-architecture model
    python bench/gpu_check.py --model /path/to/Llama-3.2-1B
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GB = 1024 ** 3


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a local Hugging Face model folder (default: a random Llama-architecture model)")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch (paper: 16)")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per training example (paper: 1024)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per measurement (after one warm-up)")
    parser.add_argument("--gen-samples", type=int, default=128, help="prompts to generate for")
    parser.add_argument("--gen-batch-size", type=int, default=16,
                        help="configured generation batch; on a GPU the tool runs 4x this")
    parser.add_argument("--prompt-words", type=int, default=200, help="words per generation prompt")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt")
    parser.add_argument("--hidden", type=int, default=1024, help="random model: hidden size")
    parser.add_argument("--layers", type=int, default=24, help="random model: decoder layers")
    parser.add_argument("--vocab", type=int, default=32000, help="random model: vocabulary size")
    parser.add_argument("--no-4bit", action="store_true", help="skip the 4-bit measurement")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="check this script itself on a machine without a GPU: a tiny model on the CPU, fp32, "
                             "tiny shapes, no 4-bit (the figures mean nothing)")
    return parser.parse_args(argv)


def random_model(folder: Path, vocab: int, hidden: int, layers: int, device: str) -> None:
    """A random Llama-architecture model (safetensors) and a word-level tokenizer over words w0..wN."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(vocab - 3)}}
    backend = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="</s>")
    tokenizer.save_pretrained(folder)
    heads = max(1, hidden // 64)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         pad_token_id=1, bos_token_id=2, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):  # initialising on the GPU takes seconds, on a few CPU cores minutes
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16 if device == "cuda" else torch.float32).save_pretrained(folder)
    del model


def words(rng: random.Random, count: int, vocab: int) -> str:
    return " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(count))


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / GB, 2) if torch.cuda.is_available() else None


def vocab_size(tokenizer) -> int:
    return min(len(tokenizer), 32000)


def measure_training(path: str, placement, load_in_4bit: bool, args) -> dict:
    import torch

    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.model.lora import peft_model
    from fedrouter_cli.model.train import encode, train_steps

    train = TrainConfig(batch_size=args.batch_size, max_length=args.max_length)
    model, tokenizer = peft_model(path, train, load_in_4bit, placement)
    rng = random.Random(0)
    vocab = vocab_size(tokenizer)
    # every row encodes to max_length tokens (the instruction is cut), ~15% of them response, as in the data
    rows = [(words(rng, args.max_length, vocab), words(rng, max(1, args.max_length * 15 // 100), vocab))
            for _ in range(2 * args.batch_size)]
    tokens_per_row = sum(len(encode(tokenizer, q, a, args.max_length)[0]) for q, a in rows) / len(rows)

    train_steps(model, tokenizer, rows, 1, args.batch_size, train.lr, args.max_length, seed=0)  # warm-up
    sync()
    peak_reset()
    started = time.perf_counter()
    outcome = train_steps(model, tokenizer, rows, args.steps, args.batch_size, train.lr, args.max_length, seed=1)
    sync()
    seconds = time.perf_counter() - started
    ours = {"tokens_per_s": round(args.steps * args.batch_size * tokens_per_row / seconds, 1),
            "seconds_per_step": round(seconds / args.steps, 3), "peak_gpu_gb": peak_gb(),
            "first_loss": round(outcome.first_loss, 4), "last_loss": round(outcome.last_loss, 4)}

    device = next(model.parameters()).device
    ids = torch.randint(3, vocab, (args.batch_size, args.max_length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    params = [p for name, p in model.named_parameters() if "lora_" in name]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=0.0)
    model.train()

    def bare_step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    bare_step()
    sync()
    peak_reset()
    started = time.perf_counter()
    for _ in range(args.steps):
        bare_step()
    sync()
    bare_seconds = time.perf_counter() - started
    model.eval()
    bare = {"tokens_per_s": round(args.steps * ids.numel() / bare_seconds, 1),
            "seconds_per_step": round(bare_seconds / args.steps, 3), "peak_gpu_gb": peak_gb()}
    return {"fedrouter": ours, "bare": bare, "ratio": round(ours["tokens_per_s"] / bare["tokens_per_s"], 3),
            "tokens_per_row": tokens_per_row, "base_parameters": sum(p.numel() for n, p in model.named_parameters()
                                                                      if "lora_" not in n)}


def measure_generation(path: str, placement, args, adapters: int = 4) -> dict:
    import torch

    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.data.prompts import format_prompt
    from fedrouter_cli.model.device import generate_batch_size, to_model_device
    from fedrouter_cli.model.generate import generate
    from fedrouter_cli.model.lora import (
        get_adapter,
        lora_config,
        peft_model,
        set_adapter_weights,
    )

    train = TrainConfig(max_length=args.max_length)
    model, tokenizer = peft_model(path, train, False, placement)
    generator = torch.Generator().manual_seed(0)
    names = [f"g{a:02d}" for a in range(adapters)]
    for name in names:
        model.add_adapter(name, lora_config(train))
        shapes = get_adapter(model, name)
        set_adapter_weights(model, {k: torch.randn(v.shape, generator=generator).numpy() * 0.02
                                    for k, v in shapes.items()}, adapter_name=name)
    model.eval()
    base = model.get_base_model()
    base.generation_config.eos_token_id = None  # every answer is exactly --new-tokens long, in both runs
    rng = random.Random(1)
    vocab = vocab_size(tokenizer)
    prompts = [words(rng, args.prompt_words + rng.randrange(args.prompt_words // 4 + 1), vocab)
               for _ in range(args.gen_samples)]
    routed = [names[i % adapters] for i in range(len(prompts))]
    batch = generate_batch_size(args.gen_batch_size, placement)

    def timed(run) -> float:
        run(prompts[:batch], routed[:batch], 2)  # warm-up
        sync()
        peak_reset()
        started = time.perf_counter()
        run(prompts, routed, args.new_tokens)
        sync()
        return time.perf_counter() - started

    def ours(texts, adapters_of, new_tokens):
        generate(model, tokenizer, texts, adapters_of, strategy="mixed", max_new_tokens=new_tokens,
                 batch_size=batch, max_length=args.max_length)

    @torch.inference_mode()
    def bare(texts, adapters_of, new_tokens):
        tokenizer.padding_side = "left"
        ordered = sorted(texts, key=len, reverse=True)
        with model.disable_adapter():
            for start in range(0, len(ordered), batch):
                inputs = tokenizer([format_prompt(t) for t in ordered[start:start + batch]], return_tensors="pt",
                                   padding=True, truncation=True, max_length=args.max_length)
                base.generate(**to_model_device(inputs, model), max_new_tokens=new_tokens, do_sample=False,
                              use_cache=True, pad_token_id=tokenizer.pad_token_id)

    seconds = timed(ours)
    ours_peak = peak_gb()
    bare_seconds = timed(bare)
    for name in names:
        model.delete_adapter(name)
    return {"batch_size": batch, "adapters": adapters,
            "fedrouter_mixed": {"samples_per_s": round(len(prompts) / seconds, 2), "peak_gpu_gb": ours_peak},
            "bare_base_model": {"samples_per_s": round(len(prompts) / bare_seconds, 2), "peak_gpu_gb": peak_gb()},
            "ratio": round(bare_seconds / seconds, 3)}


def release() -> None:
    import torch

    from fedrouter_cli.model import lora

    lora._peft_model.cache_clear()  # the only cached copy of the base model (loading returns fresh ones)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def attempt(measure, *args) -> dict:
    import torch

    try:
        return measure(*args)
    except torch.cuda.OutOfMemoryError as exc:
        return {"error": f"out of GPU memory: {str(exc).splitlines()[0]}"}
    finally:
        release()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a --model is a local folder; nothing is downloaded
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if args.cpu_smoke:
        args.batch_size, args.max_length, args.steps = 2, 64, 1
        args.gen_samples, args.prompt_words, args.new_tokens, args.gen_batch_size = 4, 8, 3, 2
        args.hidden, args.layers, args.vocab, args.no_4bit = 64, 2, 512, True
    elif not torch.cuda.is_available():
        print("bench/gpu_check.py needs a CUDA GPU, and torch sees none on this machine; run it on a GPU machine "
              "(or pass --cpu-smoke to check the script itself).", file=sys.stderr)
        return 2
    import peft
    import transformers

    from fedrouter_cli.model.device import CPU, resolve_device

    placement = CPU if args.cpu_smoke else resolve_device("cuda")
    started = time.perf_counter()
    result: dict = {"device": torch.cuda.get_device_name(0) if placement.is_cuda else "cpu",
                    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "peft": peft.__version__},
                    "shapes": {"batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
                               "lora": "q_proj,v_proj r8"}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        path = args.model
        if path is None:
            path = str(Path(tmp) / "random-llama")
            random_model(Path(path), args.vocab, args.hidden, args.layers, placement.device)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        result["model"] = {"path": args.model or "random Llama architecture", "hidden_size": config.hidden_size,
                           "layers": config.num_hidden_layers, "vocab": config.vocab_size}
        result["train"] = {placement.dtype: attempt(measure_training, path, placement, False, args)}
        if args.no_4bit:
            result["train"]["nf4"] = {"skipped": "--no-4bit"}
        elif importlib.util.find_spec("bitsandbytes") is None:
            result["train"]["nf4"] = {"skipped": "bitsandbytes is not importable"}
        else:
            result["train"]["nf4"] = attempt(measure_training, path, placement, True, args)
        result["generate"] = attempt(measure_generation, path, placement, args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
