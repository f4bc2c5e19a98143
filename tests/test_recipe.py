"""The shipped recipe (kws/recipes/default.toml) is the shipped model's, and `--recipe` reads it as flags."""

import dataclasses
import json
from pathlib import Path

import onnx
import pytest
import torch

from kws.cli import _export_settings, _parse, _train_config, main
from kws.config import Config
from kws.errors import KwsError
from kws.recipe import load_recipe

MODELS = Path(__file__).resolve().parent.parent / "models"


def _recipe_config(step: str, *flags: str) -> Config:
    return _train_config(_parse(["train", "--recipe", "default", "--step", step, *flags]))


def _as_trained(config: Config, stored: Config) -> Config:
    """`config` with what a run fills in from the data: the words, and the speakers it held out."""
    return dataclasses.replace(config, data=dataclasses.replace(
        config.data, keywords=stored.data.keywords, held_out_speakers=stored.data.held_out_speakers))


def test_the_recipe_gives_exactly_the_shipped_models_settings():
    stored = Config.from_dict(torch.load(MODELS / "kws.pt", weights_only=True)["config"])
    assert _as_trained(_recipe_config("tuned"), stored).differences(stored) == []
    # step 1 differs from step 2 in the settings step 2 names, and nowhere else
    recipe = load_recipe("default")
    clips = _as_trained(_recipe_config("clips"), stored)
    named = {"sequence_ms", "level_db", "label_smoothing", "learning_rate", "epochs", "unknown_percent",
             "speech_gaps", "select_by"}
    assert {name.split(".")[1] for name in clips.differences(stored)} <= named
    assert set(recipe.steps["tuned"]) - {"out", "init_from"} == named


def test_the_recipes_export_settings_are_the_shipped_models():
    meta = {p.key: p.value for p in onnx.load(str(MODELS / "kws.onnx"), load_external_data=False).metadata_props}
    detection, speeds, steps, _ = _export_settings(_parse(["export", "--recipe", "default"]))
    assert detection == json.loads(meta["detection"])
    assert list(speeds) == json.loads(meta["speeds"]) and steps == json.loads(meta["stream"])["steps"]


def test_flags_win_over_the_recipe():
    args = _parse(["train", "--recipe", "default", "--step", "clips", "--seed", "1", "--on-off-fold", "1",
                   "--out", "elsewhere"])
    config = _train_config(args)
    assert (config.train.seed, config.data.on_off_fold, args.out) == (1, 1, Path("elsewhere"))
    assert config.data.unknown_percent == 40 and args.negatives == [Path("runs/negatives")]  # the recipe's
    mine = _parse(["train", "--recipe", "default", "--step", "clips", "--negatives", "mine"])
    assert mine.negatives == [Path("mine")]  # replaced, not added to


@pytest.mark.parametrize("text, error", [
    ('[train]\nsed = 1\n', "'sed' is not a `kws train` setting"),
    ('[train]\nseed = "one"\n', "seed = 'one'"),
    ('[train]\nseed = 1\n[steps.a]\nout = "x"\n[other]\n', "tables [train], [steps.NAME] and [export] only"),
    ('[train\n', "is not valid TOML"),
])
def test_a_bad_recipe_is_one_line_and_exit_2(tmp_path, capsys, text, error):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text if "steps" in text else text + '[steps.a]\nout = "x"\n')
    assert main(["train", "--recipe", str(recipe), "--step", "a", "--data", "d"]) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1


def test_steps_and_recipes_that_do_not_exist_are_named(capsys):
    assert main(["train", "--recipe", "default", "--step", "third"]) == 2
    assert "trains in steps clips, tuned" in capsys.readouterr().err
    assert main(["train", "--step", "clips", "--data", "d", "--out", "o"]) == 2
    assert "give the recipe too" in capsys.readouterr().err
    assert main(["train", "--recipe", "nonesuch", "--step", "a"]) == 2
    assert "shipped recipes: default" in capsys.readouterr().err
    assert main(["train", "--data", "d"]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_settings_of_retired_experiments_load_when_off_and_are_refused_when_on():
    stored = Config().to_dict()
    stored["train"] |= {"mixup_alpha": 0.0, "distill_temperature": 2.0}  # off, and a value that only mattered with it
    stored["model"] |= {"members": 1, "bidirectional": False}
    assert Config.from_dict(stored) == Config()
    stored["train"]["mixup_alpha"] = 0.3
    with pytest.raises(KwsError, match="train.mixup_alpha = 0.3: an experiment this version no longer has"):
        Config.from_dict(stored)


def test_the_own_words_recipe_starts_from_the_shipped_model_in_one_step(tmp_path):
    args = _parse(["train", "--recipe", "own-words", "--data", str(tmp_path), "--keywords", "lights",
                   "--out", str(tmp_path / "run")])
    config = _train_config(args)
    assert args.init_from == Path("models/kws.pt") and args.negatives == [Path("../shared/data/other_speech")]
    assert config.data.keywords == ("lights",) and config.data.keyword_examples == 1000
    assert config.model == Config.from_dict(torch.load(MODELS / "kws.pt", weights_only=True)["config"]).model


def _speech_commands_v2_in_miniature(root: Path) -> Path:
    """The full data set's layout, a few tone clips per word: the ten commands, two of the other 25 words,
    the noise folder and both official lists (speakers 0-1 validate, 2 test, 3-5 train)."""
    import numpy as np
    import soundfile as sf

    from conftest import RATE, tone_clip
    from kws.config import COMMANDS

    rng = np.random.default_rng(0)
    lists = {"validation_list.txt": [], "testing_list.txt": []}
    for n, word in enumerate((*COMMANDS, "bed", "marvin")):
        (root / word).mkdir(parents=True)
        for speaker in range(6):
            name = f"{speaker:08x}_nohash_0.wav"
            sf.write(root / word / name, tone_clip(rng, 300 + 250 * n, 3300 - 250 * n), RATE, subtype="PCM_16")
            if speaker < 3:
                lists["validation_list.txt" if speaker < 2 else "testing_list.txt"].append(f"{word}/{name}")
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "hum.wav", (0.1 * rng.standard_normal(10 * RATE)).astype(np.float32), RATE)
    for name, lines in lists.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_the_full_data_recipe_trains_the_12_classes_and_scores_the_official_test_list(tmp_path, monkeypatch, capsys):
    """The documented command line of kws/recipes/speech-commands.toml, in the folder it expects, on a miniature
    of Speech Commands v0.02 (the real one is 2.3 GB: CI downloads nothing)."""
    _speech_commands_v2_in_miniature(tmp_path / "data" / "speech_commands")
    monkeypatch.chdir(tmp_path)
    small = ["--epochs", "1", "--hidden-size", "16", "--no-progress"]
    assert main(["train", "--recipe", "speech-commands", *small]) == 0
    state = torch.load(tmp_path / "runs" / "v2" / "best.pt", weights_only=False)
    assert state["labels"] == ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off",
                               "stop", "go"]
    assert state["config"]["model"]["frame_stack"] == 2
    capsys.readouterr()
    assert main(["eval", "--checkpoint", "runs/v2/best.pt", "--data", "data/speech_commands", "--split", "testing"]) == 0
    table = capsys.readouterr().out
    # the ten commands' test clips (one speaker), one tenth as many other words and silence cuts each
    assert "on 12 clips" in table and table.count("       1  ") == 12
