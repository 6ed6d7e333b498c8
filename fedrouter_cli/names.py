"""Client names: `c03` for client 3, and reading a node folder's name back to its client. Pure
string rules, shared by the file layer (rundir) and the algorithms' rules."""

from __future__ import annotations

import re


def client_name(index: int) -> str:
    return f"c{index:02d}"


CLIENT_FOLDER = re.compile(r"(?:c|node-?)(\d{1,4})")


def client_index(name: str) -> int | None:
    """The client a name stands for, read exactly: 'c03' (as client_name writes it) or a node
    folder 'node-3' / 'node3' is client 3; anything else ('c03-copy2', 'data') is None, never a
    number pieced together from its digits. The inverse of client_name, and how a node knows its
    client."""
    match = CLIENT_FOLDER.fullmatch(name)
    return int(match.group(1)) if match else None
