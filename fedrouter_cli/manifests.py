"""A stage's result and its manifest: the record, written last, that marks a stage's outputs as
done and says what they were made from (fingerprint, config slice, upstream fingerprints, package
versions), so a rerun with the same inputs is a cache hit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from fedrouter_cli.rundir import RunDir


@dataclass
class StageResult:
    stage: str
    cache_hit: bool
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "cache_hit": self.cache_hit, "seconds": round(self.seconds, 3),
                **self.summary, "warnings": self.warnings}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("fedrouter", "torch", "transformers", "peft", "flwr", "scikit-learn", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cache_hit(run: RunDir, stage: str, fp: str, force: bool, *sub: str) -> StageResult | None:
    if force:
        return None
    started = time.perf_counter()
    manifest = run.manifest(stage, *sub)
    if manifest is None or manifest.get("fingerprint") != fp:
        return None
    return StageResult(stage, True, time.perf_counter() - started, manifest.get("summary", {}),
                       manifest.get("warnings", []))


def manifest(stage: str, fp: str, config_slice: dict[str, Any], inputs: dict[str, str],
             seconds: float, summary: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    return {
        "stage": stage,
        "fingerprint": fp,
        "config": config_slice,
        "inputs": inputs,
        "versions": package_versions(),
        "seconds": round(seconds, 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "warnings": warnings,
    }
