"""Which finished data stages of a run dir a new config makes stale (their fingerprint changes)."""

from __future__ import annotations

from fedrouter_cli.config import Config
from fedrouter_cli.rundir import RunDir


def stale_stages(run: RunDir, config: Config) -> list[str]:
    """The finished stages among partition, embed, cluster-local whose inputs `config` changes."""
    from fedrouter_cli.fingerprints import (
        cluster_fingerprint,
        embed_fingerprint,
        partition_fingerprint,
    )

    checks = {"partition": lambda: partition_fingerprint(config)[0], "embed": lambda: embed_fingerprint(config),
              "cluster-local": lambda: cluster_fingerprint(config)}
    stale = []
    for stage, current in checks.items():
        try:
            done = run.manifest(stage)
        except Exception:  # a corrupt manifest is the stage's own error to report
            continue
        if done is not None and done.get("fingerprint") != current():
            stale.append(stage)
    return stale
