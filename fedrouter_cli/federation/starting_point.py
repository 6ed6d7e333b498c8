"""`--init-from`: start a federation from the adapters of an earlier one, so that a user can train
more rounds, or train on new clients, without starting over.

A starting point is either a run dir (its saved rounds of the same --alg; the last one is used)
or a folder written by `fedrouter export` (its adapters and the router's centroids). The option
is pinned when it is given: the resolved path plus a digest of the adapters it holds, so the
simulate fingerprint follows the adapters' content (not where they lie), a later command on the
run needs no access to the source, and a source changed since is refused rather than used.

How each algorithm maps the source's adapters onto its own is its rule's `warm_start`
(strategies.base: by name, else the source's only adapter, else their mean; FedRouter: each new
global cluster takes the adapter of the nearest source centroid). Only the adapters the server
holds start from the source: what clients keep for themselves (FedSA's B, FedDPA's and Local's
local adapters) stays on the nodes that trained it and starts fresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedrouter_cli.config import INIT_PIN as PIN
from fedrouter_cli.config import Config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import read_json
from fedrouter_cli.rundir import RunDir

if TYPE_CHECKING:  # torch: only when adapters are loaded, so pinning the option stays light
    from fedrouter_cli.model.lora import Adapter

EXPORT_ROUTER = Path("router") / "router.json"


@dataclass
class StartingPoint:
    """The adapters a federation starts from, and where they came from."""

    source: str                     # the folder given to --init-from
    round: int                      # the source's round these adapters are from
    adapters: dict[str, Adapter]
    centroids: dict[str, np.ndarray] = field(default_factory=dict)  # adapter -> its routing centroid, if any

    def describe(self, mapping: dict[str, str]) -> dict:
        return {"source": self.source, "round": self.round, "from": dict(sorted(mapping.items()))}


def _adapter_folders(path: Path, alg: str) -> tuple[int, dict[str, Path], Path | None]:
    """(round, adapter name -> folder, file of routing centroids or state) of an export or a run dir."""
    if (path / EXPORT_ROUTER).is_file():
        settings = read_json(path / EXPORT_ROUTER)
        names = [str(n) for n in settings.get("adapters", [])]
        return int(settings.get("round", 0)), {n: path / "adapters" / n for n in names}, path / "router" / "centroids.parquet"
    if (run := RunDir(path)).stage_dir("simulate").is_dir():
        out = run.federation(alg)
        rounds = out.saved_rounds()
        if not rounds:
            finished = _saved_algorithms(path)
            others = f" (it has rounds of {', '.join(finished)}: export one with `fedrouter export`)" if finished else ""
            raise FedrouterError(f"--init-from {path} holds no saved round of {alg}{others}; pass a run dir that "
                                 f"ran `fedrouter simulate --alg {alg}`, or an exported folder.")
        state = read_json(out.state_file(rounds[-1]))
        return rounds[-1], {n: out.adapters_dir(rounds[-1]) / n for n in state["adapters"]}, out.state_file(rounds[-1])
    raise FedrouterError(f"--init-from {path} is neither a run dir with saved rounds nor a folder written by "
                         "`fedrouter export`; pass one of those.")


def _saved_algorithms(path: Path) -> dict[str, int]:
    """The algorithms with saved rounds in a run dir, and the last round of each."""
    run = RunDir(path)
    last = {}
    for alg_dir in sorted(run.stage_dir("simulate").glob("*/")):
        if rounds := run.federation(alg_dir.name).saved_rounds():
            last[alg_dir.name] = rounds[-1]
    return last


def _source_files(path: Path) -> list[Path]:
    """Every file a starting point's adapters are read from: an export's adapters and router, or
    the last saved round (adapters and state) of each algorithm in a run dir."""
    if (path / EXPORT_ROUTER).is_file():
        return sorted((path / "adapters").glob("*/adapter_model.safetensors")) + [path / "router" / "centroids.parquet"]
    files: list[Path] = []
    run = RunDir(path)
    for alg, last in _saved_algorithms(path).items():
        out = run.federation(alg)
        files += [out.state_file(last)] + sorted(out.adapters_dir(last).glob("*/adapter_model.safetensors"))
    return files


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in _source_files(path):
        try:
            digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
        except OSError:
            raise FedrouterError(f"--init-from: {file} is missing or unreadable; pass a complete run dir or export.") from None
    return digest.hexdigest()[:16]


def pin(value: str) -> str:
    """'' for none, else the resolved path with the digest of the adapters it holds."""
    if value in ("", "none"):
        return ""
    path = Path(value.split(PIN)[0]).expanduser().resolve()
    if not path.is_dir():
        raise FedrouterError(f"--init-from {value} is not a folder; pass a run dir or a folder written by `fedrouter export`.")
    if not (path / EXPORT_ROUTER).is_file() and not _source_files(path):
        raise FedrouterError(f"--init-from {path} is neither a run dir with saved rounds nor a folder written by "
                             "`fedrouter export`; pass one of those.")
    return f"{path}{PIN}{_digest(path)}"


Router = Callable[[dict], "tuple[np.ndarray, list[str]] | None"]


def load_starting_point(value: str, alg: str, model_reference: str, fresh: Adapter,
                        global_router: Router) -> StartingPoint:
    """The adapters of a pinned --init-from, checked against the digest it was pinned with, the
    base model (its reference, as adapters record it) and a fresh adapter's keys and shapes.
    global_router: the algorithm's own reader of a saved state's centroids (Strategy.global_router)."""
    path_text, _, wanted = value.partition(PIN)
    path = Path(path_text)
    if not path.is_dir():
        raise FedrouterError(f"--init-from {path} no longer exists; pass --init-from again with the folder, or "
                             "--init-from none to start from fresh adapters.")
    if wanted and _digest(path) != wanted:
        raise FedrouterError(f"The adapters in --init-from {path} changed since this run was set up to start from "
                             "them; pass --init-from again to start from what it holds now.")
    from fedrouter_cli.model.lora import load_adapter

    round_number, folders, extra = _adapter_folders(path, alg)
    adapters = {}
    for name, folder in folders.items():
        trained_on = read_json(folder / "adapter_config.json").get("base_model_name_or_path")
        if trained_on != model_reference:
            raise FedrouterError(f"--init-from {path}: adapter {name} was trained on {trained_on}, this run uses "
                                 f"{model_reference}; pass --model {trained_on} or another starting point.")
        adapters[name] = load_adapter(folder)
        _check_shapes(path, name, adapters[name], fresh)
    return StartingPoint(str(path), round_number, adapters, _centroids(extra, global_router))


def _check_shapes(path: Path, name: str, adapter: Adapter, fresh: Adapter) -> None:
    # a part may be missing (FedSA's server holds only A): the fresh adapter's part is kept there
    if not set(adapter) <= set(fresh) or any(adapter[k].shape != fresh[k].shape for k in adapter):
        raise FedrouterError(f"--init-from {path}: adapter {name} has other LoRA layers or rank than this run's "
                             "(--lora-r, target modules); pass the settings it was trained with.")


def _centroids(file: Path | None, global_router: Router) -> dict[str, np.ndarray]:
    """Each adapter's routing centroid: an export's router, or FedRouter's saved global centroids."""
    if file is None or not file.is_file():
        return {}
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(file).to_pydict()
        return {str(n): np.asarray(c, dtype=np.float32) for n, c in zip(table["adapter"], table["centroid"])}
    router = global_router(read_json(file))
    return {} if router is None else {name: np.asarray(c, dtype=np.float32) for c, name in zip(*router)}


def starting_point(config: Config, run: RunDir, global_router: Router) -> StartingPoint | None:
    """The run's --init-from loaded and checked (None without one), before anything is written."""
    if not config.train.init_from:
        return None
    from fedrouter_cli.model.loading import model_reference
    from fedrouter_cli.model.lora import initial_adapter

    if Path(config.train.init_from.partition(PIN)[0]) == run.root.resolve():
        raise FedrouterError("--init-from is this run dir itself, whose rounds the new run replaces; export it "
                             "first (`fedrouter export`) or pass another run dir.")
    fresh = initial_adapter(config.model.model, config.train, config.train.seed)
    return load_starting_point(config.train.init_from, config.train.alg, model_reference(config.model.model), fresh,
                               global_router)
