"""Keep dependencies' noise that a user cannot act on off the terminal and out of logs.

Called by the CLI and by the ClientApp module (so Ray workers and SuperNodes' ClientApps are as
quiet as the command that started them). Only named messages are silenced; --debug shows them.
"""

from __future__ import annotations

import logging
import os
import warnings

# (category, start of the message): deprecations inside our dependencies, not in our calls
_DEPENDENCY_WARNINGS = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),   # transformers, called by peft
    (DeprecationWarning, r"`torch.jit.script_method` is deprecated"),  # torch, at a dependency's import
    (DeprecationWarning, r"'click.utils.get_(binary|text)_stream' is deprecated"),  # typer's import of click
    # peft, when evaluation drops the adapter it generated with (as it means to) before the next
    (UserWarning, r"Adapter .* was active which is now deleted"),
)


class _SkipMessage(logging.Filter):
    """Drops one logger's records that start with `prefix`, and nothing else."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def silence_dependencies() -> None:
    if os.environ.get("FEDROUTER_DEBUG") == "1":
        return
    for category, message in _DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    # bitsandbytes logs at import, on every CPU machine, that an optional kernel package is missing;
    # only --load-in-4bit uses bitsandbytes, and that needs CUDA (model.device.check_4bit)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # on CPUs with AVX512-BF16, bitsandbytes' import asks the `kernels` package for a hub kernel,
    # which warns that offline mode skips its publisher check; nothing is downloaded or used
    hub = logging.getLogger("kernels._internals.hf_hub")
    if not any(isinstance(f, _SkipMessage) for f in hub.filters):
        hub.addFilter(_SkipMessage("Skipping publisher trust check"))
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def no_loading_bars() -> None:
    """transformers draws a 'Loading weights' bar for every from_pretrained; a stage loads its
    model several times (and every worker once), so the bars say nothing but fill logs."""
    if os.environ.get("FEDROUTER_DEBUG") == "1":
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
