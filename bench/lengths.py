"""Token lengths of the paper's raw tasks: what --max-length cuts and what --max-new-tokens must cover.

Per task (train split): the 50th/95th percentile of the reference in the default model's tokens
(EOS included, as training appends it), of the formatted prompt, and the share of prompts longer
than the cpu preset's max length (cut at generation from the left; in training the prompt gets
what the response leaves). Tokenizer only, no model weights.

    python bench/lengths.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
TASKS = ("qqp", "webnlg", "samsum", "gigaword")


def main() -> None:
    from transformers import AutoTokenizer

    from fedrouter_cli.config import DEFAULT_MODEL
    from fedrouter_cli.data.prompts import format_prompt
    from fedrouter_cli.model.loading import resolve_model
    from fedrouter_cli.presets import PRESETS

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    max_length = PRESETS["cpu"]["train"]["max_length"]
    max_new = PRESETS["cpu"]["eval"]["max_new_tokens"]
    figures = {}
    for task in TASKS:
        rows = [json.loads(line) for line in (RAW / task / "train.jsonl").read_text().splitlines()]
        references = np.array([len(tokenizer(r["response"].strip(), add_special_tokens=False)["input_ids"]) + 1
                               for r in rows])
        prompts = np.array([len(tokenizer(format_prompt(r["instruction"]), add_special_tokens=False)["input_ids"])
                            for r in rows])
        whole = prompts + references
        figures[task] = {
            "rows": len(rows),
            "reference_tokens_p50": int(np.percentile(references, 50)),
            "reference_tokens_p95": int(np.percentile(references, 95)),
            "reference_covered_by_max_new_tokens": round(float(np.mean(references <= max_new)), 4),
            "prompt_tokens_p50": int(np.percentile(prompts, 50)),
            "prompt_tokens_p95": int(np.percentile(prompts, 95)),
            "prompts_cut_at_generation": round(float(np.mean(prompts > max_length)), 4),
            "examples_cut_in_training": round(float(np.mean(whole > max_length)), 4),
        }
    write_result("lengths", {"command": "python bench/lengths.py", "max_length": max_length,
                             "max_new_tokens": max_new, "tasks": figures})


if __name__ == "__main__":
    main()
