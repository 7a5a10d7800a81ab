"""FitConfig and the content options: declared once (embeddings/options.py), the CLI made from them."""

from __future__ import annotations

import dataclasses

import pytest

from embeddings.encoder import POOLINGS
from embeddings.options import PARTS, TextConfig, cli_options, flag_name
from trainer.cli import build_parser, fit_config
from trainer.config import FitConfig
from trainer.prepare import content_config


def fit_actions() -> dict[str, object]:
    """The `fit` subcommand's options by their flag."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {s: a for a in sub.choices["fit"]._actions for s in a.option_strings}


def test_every_content_option_is_a_fit_flag_with_its_declared_help_and_default():
    actions = fit_actions()
    declared = cli_options()
    assert {f.name for f in declared} >= {*PARTS, "pooling", "whiten_dim", "cache_dir", "text_model"}
    for f in declared:
        action = actions[f"--{flag_name(f).replace('_', '-')}"]
        assert action.help.startswith(f.metadata["help"])
        assert action.dest == f"content.{f.name}"
        if f.name not in PARTS:
            assert action.default == getattr(TextConfig(), f.name)
    assert actions["--pooling"].choices == list(POOLINGS)  # the encoder's own list
    # nothing else in the content group: every flag of it comes from a declaration
    content_dests = {a.dest for a in actions.values() if a.dest.startswith("content.")}
    assert content_dests == {f"content.{f.name}" for f in declared}


def test_flags_land_in_the_run_config():
    args = build_parser().parse_args(["fit", "dnn", "--tokens", "--whiten-dim", "16", "--pooling",
                                      "first-last-avg", "--cache-dir", ""])
    cfg = fit_config(args)
    assert cfg.content == TextConfig.asked_for(tokens=True, whiten_dim=16, pooling="first-last-avg", cache_dir="")
    assert content_config(cfg, uses_text=False) == cfg.content
    assert content_config(cfg, uses_text=True) == cfg.content.with_all_parts()
    plain = fit_config(build_parser().parse_args(["fit", "dnn"]))
    assert plain.content == FitConfig(model="dnn").content and content_config(plain, uses_text=False) is None


def test_bad_content_flags_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "dnn", "--pooling", "max"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "dnn", "--whiten-dim", "0"])


def test_config_round_trips_and_old_flat_configs_still_load():
    cfg = FitConfig(model="mmoe", seed=3).with_content(tokens=True, topic_dim=8)
    assert FitConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    # config.json of the last release: content options at the top level, `text` the vectors switch
    old = {"model": "mmoe", "seed": 3, "tokens": True, "text": True, "whiten_dim": 16, "pooling": "last4-mean"}
    loaded = FitConfig.from_dict(old)
    assert loaded.content == TextConfig.asked_for(tokens=True, vectors=True, whiten_dim=16)
    assert loaded.seed == 3


def test_a_refresh_has_its_own_epochs_and_learning_rate_unless_given():
    from trainer.config import FULL_FIT, REFRESH

    parse = build_parser().parse_args
    full = fit_config(parse(["fit", "mmoe"]))
    refresh = fit_config(parse(["fit", "mmoe", "--init-from", "runs/x"]))
    assert (full.epochs, full.lr) == (FULL_FIT["epochs"], FULL_FIT["lr"])
    assert (refresh.epochs, refresh.lr) == (REFRESH["epochs"], REFRESH["lr"])
    assert REFRESH != FULL_FIT
    given = fit_config(parse(["fit", "mmoe", "--init-from", "runs/x", "--epochs", "3", "--lr", "0.01"]))
    assert (given.epochs, given.lr) == (3, 0.01)
    assert FitConfig.from_dict(given.to_dict()) == given
