"""Recipes: a model's training steps and export settings in one TOML file (kws/recipes/default.toml is the
shipped model's), read by `kws train --recipe R --step S` and `kws export --recipe R`.

A recipe holds `[train]` (settings of every step), `[steps.NAME]` (each step's own) and `[export]`. Its keys
are the flags of those commands; the command checks them against its own flags.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from kws.errors import KwsError

RECIPES = Path(__file__).parent / "recipes"
DEFAULT = "default"


@dataclass(frozen=True)
class Recipe:
    path: Path
    train: dict  # every step
    steps: dict[str, dict]  # step name -> its own settings, over `train`
    export: dict

    def step(self, name: str | None) -> dict:
        """The settings of one training step (`None`: the only one, where there is one)."""
        if name is None and len(self.steps) == 1:
            name = next(iter(self.steps))
        if name not in self.steps:
            asked = "give --step" if name is None else f"it has no step {name!r}"
            raise KwsError(f"{self.path} trains in steps {', '.join(self.steps)}: {asked}")
        return self.train | self.steps[name]


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe file, or one shipped with kws by its name (`default`)."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = RECIPES / f"{path}.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        shipped = ", ".join(sorted(p.stem for p in RECIPES.glob("*.toml")))
        raise KwsError(f"cannot read recipe {name_or_path} ({error.strerror}); shipped recipes: {shipped}") from None
    try:
        content = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise KwsError(f"{path} is not valid TOML: {error}") from None
    unknown = set(content) - {"train", "steps", "export"}
    steps = content.get("steps", {})
    if unknown or not all(isinstance(v, dict) for v in [content.get("train", {}), content.get("export", {}),
                                                         steps, *steps.values()]):
        raise KwsError(f"{path}: a recipe holds the tables [train], [steps.NAME] and [export] only")
    return Recipe(path, content.get("train", {}), steps, content.get("export", {}))


def default_export_settings() -> dict:
    """The shipped recipe's export settings: what `kws export` stores for a setting given nowhere else."""
    return load_recipe(DEFAULT).export
