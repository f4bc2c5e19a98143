"""Checkpoints: written atomically, read with `weights_only=True` (no pickle code can run)."""

from __future__ import annotations

from pathlib import Path

import torch

from kws.config import Config
from kws.errors import KwsError
from kws.files import atomic_write
from kws.model import KeywordLSTM

FORMAT = "kws-checkpoint-1"


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KwsError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KwsError(f"{path} is not a loadable kws checkpoint ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise KwsError(f"{path} is not a kws checkpoint (made by another program or version)")
    return state


def model_from_checkpoint(state: dict, path: str | Path = "checkpoint") -> tuple[KeywordLSTM, Config, tuple[str, ...]]:
    """Rebuild the model from the config stored with it; a mismatch is reported, not half-loaded."""
    config = Config.from_dict(state["config"])
    labels = tuple(state["labels"])
    model = KeywordLSTM(len(labels), config.features, config.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).strip().splitlines()]
        detail = (lines[1] if len(lines) > 1 else lines[0])[:300]
        raise KwsError(f"weights in {path} do not match the config stored with them ({detail})") from None
    model.eval()
    return model, config, labels
