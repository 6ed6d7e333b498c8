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


def silence_dependencies() -> None:
    if os.environ.get("FEDROUTER_DEBUG") == "1":
        return
    for category, message in _DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    # bitsandbytes logs at import, on every CPU machine, that an optional kernel package is missing;
    # only --load-in-4bit uses bitsandbytes, and that needs CUDA (model.device.check_4bit)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def no_loading_bars() -> None:
    """transformers draws a 'Loading weights' bar for every from_pretrained; a stage loads its
    model several times (and every worker once), so the bars say nothing but fill logs."""
    if os.environ.get("FEDROUTER_DEBUG") == "1":
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
