"""Using a trained run: answer one prompt with the routed adapter, and export adapters + router."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fedrouter_cli.config import Config
from fedrouter_cli.embed import embed_texts
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.run_output import pick_round
from fedrouter_cli.files import atomic_dir, read_json, write_json, write_table
from fedrouter_cli.fingerprints import embed_settings, simulate_fingerprint
from fedrouter_cli.model.device import resolve_device
from fedrouter_cli.model.generate import generate
from fedrouter_cli.model.loading import load_encoder, resolve_embedder
from fedrouter_cli.router import squared_distances
from fedrouter_cli.rundir import RunDir, file_in_the_way
from fedrouter_cli.vectors import vector_column


@dataclass
class Answer:
    adapter: str
    distances: dict[str, float]
    answer: str


def _global_router(run: RunDir, config: Config) -> tuple[int, np.ndarray, list[str], Path]:
    """The evaluated round's router over every global adapter: round, centroids, adapter names, adapters folder."""
    from fedrouter_cli.federation.strategies import STRATEGIES

    alg = config.train.alg
    simulated = run.require("simulate", alg, hint=f"run `fedrouter simulate --alg {alg}` first")
    # the adapters only fit the base model (and data) they were trained with; the run's config
    # changes when a later command is given another --model, and evaluate refuses that too
    if simulated["fingerprint"] != simulate_fingerprint(config):
        raise FedrouterError(f"The run's {alg} adapters were trained with other settings (e.g. another --model) "
                             "than its config.toml now holds; rerun `fedrouter simulate` with the current settings.")
    round_number = pick_round(run, alg, config.eval.round)
    out = run.federation(alg)
    router = STRATEGIES[alg].global_router(read_json(out.state_file(round_number)))
    if router is None:
        raise FedrouterError(f"Routing a prompt needs a global router, which {alg} has not; "
                             "run `fedrouter simulate --alg fedrouter` first.")
    return round_number, router[0], router[1], out.adapters_dir(round_number)


def answer_prompt(config: Config, run: RunDir, prompt: str) -> Answer:
    """Embed the prompt, pick the nearest global centroid's adapter, and generate with it."""
    from fedrouter_cli.model.lora import (
        load_adapter,
        lora_config,
        peft_model,
        set_adapter_weights,
    )

    if not prompt.strip():
        raise FedrouterError("The prompt is empty; pass the text to answer.")
    try:
        prompt.encode("utf-8")  # bytes that are not UTF-8 reach Python as lone surrogates
    except UnicodeEncodeError:
        raise FedrouterError("The prompt is not UTF-8 text; pass it in UTF-8 (check the terminal's locale).") from None
    _, centroids, names, adapters_dir = _global_router(run, config)
    placement = resolve_device(config.model.device)
    encoder, tokenizer = load_encoder(resolve_embedder(config.embed.encoder, config.model.model), placement)
    vector = embed_texts(encoder, tokenizer, [prompt], max_length=config.embed.max_length,
                         normalize=config.embed.normalized, char_features=config.embed.char_features)
    if vector.shape[1] != centroids.shape[1]:
        raise FedrouterError("The run's centroids come from another embedder; use the run's own --embedder.")
    distances = np.sqrt(squared_distances(vector, centroids)[0])  # reported with the answer
    name = names[int(distances.argmin())]
    model, lm_tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit, placement)
    model.add_adapter(name, lora_config(config.train))
    set_adapter_weights(model, load_adapter(adapters_dir / name), adapter_name=name)
    model.eval()
    try:
        text = generate(model, lm_tokenizer, [prompt], [name], max_new_tokens=config.eval.max_new_tokens,
                        prompt_format=config.train.prompt_format)[0]
    finally:
        model.delete_adapter(name)
    return Answer(name, {n: round(float(d), 4) for n, d in zip(names, distances)}, text)


EXPORT_README = """# FedRouter export

- `adapters/gNN/`: one LoRA adapter per global task cluster, in PEFT format. Each
  `adapter_config.json` names the base model by its hub id (or the absolute folder it was trained
  from), so `AutoPeftModelForCausalLM.from_pretrained("adapters/g00")` loads base and adapter
  where the hub (or its cache) is reachable.
- Offline, load the base from a folder and the adapter on top of it:
  `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_DIR), "adapters/g00")`.
  For the default model, BASE_DIR is the folder fedrouter converted it to:
  `python -c "from fedrouter_cli.model.loading import resolve_model; print(resolve_model('smollm2-135m-instruct'))"`.
- `router/centroids.parquet`: the global centroids (`adapter`, `centroid`), in the embedding space that
  `router/router.json["embedding"]` describes (the embedder's hub id and local path, mean pooling of
  its last hidden layer, the token limit, normalisation and the hashed character n-grams' settings).
- `router/route.py`: routes prompts exactly as `fedrouter generate` does, with numpy, torch,
  transformers, pyarrow and scikit-learn only: `python router/route.py "your prompt"` prints the
  adapter and the distance to every centroid (`--embedder PATH` for a local copy of the embedder).
- To route a prompt yourself: embed its raw instruction that way, take the adapter of the nearest
  centroid (Euclidean distance), and generate with the prompt the adapters were trained on:
  `router/router.json["prompt_format"]` is "alpaca" (the template in `["prompt_template"]`) or
  "chat" (the base model tokenizer's own chat template: one user turn, `add_generation_prompt=True`).
"""


def export_run(config: Config, run: RunDir, out: Path, force: bool = False) -> dict:
    """Write the adapters, the router and a README to the new folder `out`; `force` replaces an
    earlier export there (never another folder's contents)."""
    from fedrouter_cli.data.prompts import PROMPT_TEMPLATE
    out = _export_target(run, out, force)  # the user's path first: a typo should not wait for the run's checks
    round_number, centroids, names, adapters_dir = _global_router(run, config)
    if not adapters_dir.is_dir():  # so that an OSError below can only be about --out
        raise FedrouterError(f"{adapters_dir} is missing; rerun `fedrouter simulate --force`.")
    try:
        with atomic_dir(out) as tmp:
            shutil.copytree(adapters_dir, tmp / "adapters")
            for adapter_config in (tmp / "adapters").glob("*/adapter_config.json"):
                _name_base_model(adapter_config, config.model.model)  # rounds saved by older versions too
            write_table(tmp / "router" / "centroids.parquet", pa.table({"adapter": names,
                                                                          "centroid": vector_column(centroids)}))
            write_json(tmp / "router" / "router.json", {
                **embed_settings(config), "base_model": config.model.model, "round": round_number,
                "adapters": names, "distance": "euclidean", "embedding": describe_embedding(config),
                "prompt_format": config.train.prompt_format,
                "prompt_template": PROMPT_TEMPLATE if config.train.prompt_format == "alpaca" else "tokenizer chat template"})
            (tmp / "README.md").write_text(EXPORT_README)
            shutil.copyfile(Path(__file__).with_name("exported_router.py"), tmp / "router" / "route.py")
    except OSError as exc:  # read-only or special file systems, a file in the way
        raise FedrouterError(f"Could not write the export to --out {out} ({exc.strerror or exc}); "
                             "pass a writable folder.") from None
    return {"out": str(out), "adapters": names, "round": round_number}


def _name_base_model(adapter_config: Path, model: str) -> None:
    """Point the adapter at a base model other tools can load (see model_reference)."""
    import json

    from fedrouter_cli.model.loading import model_reference

    settings = json.loads(adapter_config.read_text())
    settings["base_model_name_or_path"] = model_reference(model)
    adapter_config.write_text(json.dumps(settings, indent=2))


def _export_target(run: RunDir, out: Path, force: bool = False) -> Path:
    """`out` resolved (symlinks too, so none can lead into the run dir), checked to be a new or
    empty folder, or with `force` an earlier export."""
    try:
        out = Path(out).expanduser().resolve()
    except (RuntimeError, OSError):  # a symlink loop
        raise FedrouterError(f"--out {out} is a symlink loop; pass a real folder path.") from None
    if out == run.root or run.root in out.parents:
        raise FedrouterError(f"--out {out} is inside the run dir; export to a folder outside it.")
    if out.exists() and not out.is_dir():
        raise FedrouterError(f"--out {out} is a file, not a folder; pass a new or empty folder.")
    if blocker := file_in_the_way(out):
        raise FedrouterError(f"--out {out} lies inside the file {blocker}; pass a new or empty folder.")
    if out.exists() and any(out.iterdir()):
        if force and (out / "router" / "router.json").is_file():
            return out  # an earlier export, replaced whole once the new one is written
        hint = "" if force else " (or --force to replace an earlier export)"
        raise FedrouterError(f"--out {out} exists and is not empty"
                             + (" and holds no earlier export" if force else "")
                             + f"; pass a new or empty folder{hint}.")
    return out


def describe_embedding(config: Config) -> dict:
    """What another program needs to embed a prompt as the run did (exported_router.embed reads it)."""
    from fedrouter_cli.embed import CHAR_NGRAMS
    from fedrouter_cli.model.loading import model_reference

    encoder = config.embed.encoder
    hub_id = ("sentence-transformers/all-MiniLM-L6-v2" if encoder == "minilm"
              else model_reference(config.model.model if encoder == "base" else encoder))
    return {"model": hub_id, "path": resolve_embedder(encoder, config.model.model),
            "pooling": "mean of the last hidden layer over the non-padding tokens", "max_length": config.embed.max_length,
            "normalize": config.embed.normalized, "char_ngrams": dict(CHAR_NGRAMS) if config.embed.char_features else None}
