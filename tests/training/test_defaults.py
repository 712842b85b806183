"""One source per default: the commands' flags default to ``TrainConfig()`` /
``FinetuneSettings()``, their choices are the registries', and a fine-tune's ``TrainConfig``
is built by ``FinetuneSettings.train_config`` from every field the two share."""

from __future__ import annotations

import argparse
import dataclasses

from training.commands import finetune as finetune_command
from training.commands import train as train_command
from training.data.transforms import AUGMENTATIONS, FLIPS
from training.finetuning.finetune import FinetuneSettings
from training.fitting.losses import LossConfig
from training.fitting.trainer import OPTIMIZERS, TrainConfig


def _parser(command) -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser().add_subparsers()
    command.add_parser(sub)
    return next(iter(sub.choices.values()))


def _choices(parser: argparse.ArgumentParser, flag: str) -> list[str]:
    action = next(a for a in parser._actions if flag in a.option_strings)
    return list(action.choices)


def _field_defaults(cls) -> dict:
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def _same(flag_value, field_value) -> bool:
    if isinstance(field_value, tuple):  # nargs flags parse to lists
        return list(flag_value) == list(field_value)
    return flag_value == field_value


def test_train_flags_default_to_train_config() -> None:
    args = vars(_parser(train_command).parse_args(["--data", "phantom:0"]))
    config = _field_defaults(TrainConfig)
    shared = sorted(set(args) & set(config))
    assert {"epochs", "batch_size", "lr", "optimizer", "input_size", "augment", "seed",
            "device", "num_workers", "max_steps", "out_dir", "resume",
            "overwrite"} <= set(shared)
    differing = {k: (args[k], config[k]) for k in shared if not _same(args[k], config[k])}
    assert differing == {}
    # the flags named differently from their field
    assert args["no_amp"] is (not config["amp"])
    assert args["freeze_bn"] is config["freeze_batchnorm"]


def test_finetune_flags_default_to_finetune_settings() -> None:
    args = vars(_parser(finetune_command).parse_args(
        ["--from", "start.safetensors", "--data", "phantom:0", "--out-dir", "out"]))
    settings = _field_defaults(FinetuneSettings)
    shared = sorted(set(args) & set(settings))
    assert {"epochs", "lr", "batch_size", "keep_weight", "augment", "class_balance",
            "freeze_body", "device", "seed", "max_steps"} <= set(shared)
    differing = {k: (args[k], settings[k]) for k in shared if args[k] != settings[k]}
    assert differing == {}


def test_choices_come_from_the_registries() -> None:
    train, finetune = _parser(train_command), _parser(finetune_command)
    assert _choices(train, "--augment") == list(AUGMENTATIONS)
    assert _choices(train, "--optimizer") == list(OPTIMIZERS)
    # fine-tuning offers every augmentation but those that flip (left and right organs)
    assert _choices(finetune, "--augment") == [a for a in AUGMENTATIONS if a not in FLIPS]
    assert FLIPS and FLIPS <= set(AUGMENTATIONS)
    assert FinetuneSettings().augment in _choices(finetune, "--augment")


def test_finetune_settings_build_their_train_config(tmp_path) -> None:
    shared = {f.name for f in dataclasses.fields(FinetuneSettings)} & {
        f.name for f in dataclasses.fields(TrainConfig)}
    # a value unlike TrainConfig's default for every shared field: one left uncopied shows
    values = dict(epochs=3, lr=0.005, batch_size=2, optimizer="adamw", augment="rotate",
                  seed=7, device="cpu", max_steps=5)
    assert shared == set(values), "a new shared field: give it a value here"
    for name, value in values.items():
        assert value != getattr(TrainConfig(), name)
    settings = FinetuneSettings(**values)
    loss = LossConfig(bucket_weight=0.2, class_weights=(1.0, 3.0))
    cfg = settings.train_config(input_size=[96, 112], out_dir=tmp_path, loss=loss,
                                freeze_batchnorm=True, target_spacing_mm=(0.8, 0.9),
                                overwrite=True, resume=True)
    assert isinstance(cfg, TrainConfig)
    assert {name: getattr(cfg, name) for name in values} == values
    assert cfg.input_size == (96, 112)
    assert cfg.out_dir == str(tmp_path)
    assert cfg.loss == loss
    assert cfg.freeze_batchnorm and cfg.overwrite and cfg.resume
    assert cfg.target_spacing_mm == (0.8, 0.9)
    # what neither side sets stays TrainConfig's
    assert cfg.amp == TrainConfig().amp and cfg.num_workers == TrainConfig().num_workers
