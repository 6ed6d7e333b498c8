"""Stage `embed`: embed every client's raw instructions (train and both test sets) to Parquet."""

from __future__ import annotations

import json
import time

import numpy as np

from fedrouter_cli.config import Config
from fedrouter_cli.embed_cache import EmbeddingCache
from fedrouter_cli.files import read_table, write_json, write_table
from fedrouter_cli.fingerprints import embed_fingerprint, embed_settings
from fedrouter_cli.model.device import embed_batch_size, resolve_device
from fedrouter_cli.model.loading import load_encoder, resolve_embedder
from fedrouter_cli.rundir import PARTITION_TEXT, TEST_SPLITS, RunDir
from fedrouter_cli.stages.common import (
    Progress,
    StageResult,
    cache_hit,
    manifest,
    no_progress,
    record_on_nodes,
    staged_outputs,
)
from fedrouter_cli.vectors import embeddings_table

EMBED_SPLITS = ("train", *TEST_SPLITS)


def embed_unique(config: Config, texts: list[str], progress: Progress = no_progress
                 ) -> tuple[np.ndarray, int, float, float]:
    """Vectors of distinct `texts` (through the text cache when on): vectors, texts computed,
    seconds loading the encoder, seconds embedding."""
    settings = embed_settings(config)
    placement = resolve_device(config.model.device)
    load_seconds = 0.0

    def compute(batch: list[str]) -> np.ndarray:
        nonlocal load_seconds
        loading = time.perf_counter()
        from fedrouter_cli.embed import (
            embed_texts,  # torch: only when there is something to embed
        )

        model, tokenizer = load_encoder(resolve_embedder(config.embed.encoder, config.model.model), placement)
        load_seconds = time.perf_counter() - loading
        return embed_texts(model, tokenizer, batch, embed_batch_size(config.embed.batch_size, placement),
                           config.embed.max_length, settings["normalize"], progress, config.embed.char_features)

    started = time.perf_counter()
    # bf16 vectors are close to fp32 ones but not equal: they get their own text-cache entries (the
    # stage fingerprint leaves the device out, see stages.simulate.model_settings)
    key = settings if placement.dtype == "float32" else {**settings, "dtype": placement.dtype}
    cache = EmbeddingCache(json.dumps(key, sort_keys=True))
    vectors, computed = cache.embed(texts, compute) if config.embed.text_cache else (compute(texts), len(texts))
    return vectors, computed, load_seconds, time.perf_counter() - started - load_seconds


def run_embed(config: Config, run: RunDir, force: bool = False, progress: Progress = no_progress) -> StageResult:
    partition = run.require("partition")
    fp = embed_fingerprint(config)
    if hit := cache_hit(run, "embed", fp, force):
        return hit
    if config.data.on_nodes:
        return record_on_nodes(run, "embed", fp, embed_settings(config), {})
    started = time.perf_counter()
    clients = run.clients()
    tables = {(c, s): read_table(run.partition_file(c, s), PARTITION_TEXT) for c in clients for s in EMBED_SPLITS}
    # Clients share test rows and some train rows, so each distinct text is embedded once.
    unique = sorted({t for table in tables.values() for t in table.column("instruction").to_pylist()})
    vectors, computed, load_seconds, embed_seconds = embed_unique(config, unique, progress)
    if not computed:  # every text came from the text cache: the stage still says it ran
        progress("embed", 0, len(unique))
        progress("embed", len(unique), len(unique))
    settings = embed_settings(config)
    row_of = {text: i for i, text in enumerate(unique)}
    rows = 0
    with staged_outputs(run, "embed") as at:
        for (client, split), table in tables.items():
            texts = table.column("instruction").to_pylist()
            picked = vectors[[row_of[t] for t in texts]] if texts else np.zeros((0, vectors.shape[1]), np.float32)
            write_table(at(run.embedding_file(client, split)), embeddings_table(table.column("id").to_pylist(), picked))
            rows += len(texts)
        seconds = time.perf_counter() - started
        summary = {"rows": rows, "unique_texts": len(unique), "computed_texts": computed, "dim": int(vectors.shape[1]),
                   "embedder": settings["embedder"], "normalized": settings["normalize"],
                   "load_seconds": round(load_seconds, 3), "embed_seconds": round(embed_seconds, 3),
                   "texts_per_second": round(computed / max(embed_seconds, 1e-9), 2) if computed else None,
                   "embed_dir": str(run.stage_dir("embed")), **resolve_device(config.model.device).describe()}
        write_json(at(run.manifest_path("embed")),
                   manifest("embed", fp, settings, {"partition": partition["fingerprint"]}, seconds, summary, []))
    return StageResult("embed", False, seconds, summary)
