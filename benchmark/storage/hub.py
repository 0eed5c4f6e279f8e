"""Reachability of the Hugging Face hub, checked in seconds before any download is attempted."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if a TCP connection to the hub endpoint opens within ``timeout`` s (and offline mode is off)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "0").lower() in ("1", "true", "yes"):
            return False
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_command(repo_id: str, *filenames: str, local_dir: str = "DIR") -> str:
    """The shell command that downloads ``repo_id`` (or some of its files) with the installed huggingface-hub's CLI.

    huggingface-hub 1.x ships the ``hf`` command only (``huggingface-cli`` is gone), and projbench requires 1.x.
    """
    return " ".join(["hf download", repo_id, *filenames, "--local-dir", local_dir])
