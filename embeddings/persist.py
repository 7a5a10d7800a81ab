"""A fitted featurizer on disk: one directory (a run's `text/`), its file names defined here.

    featurizer.json            the TextConfig, the encoders' model ids, block widths, token spec
    whiten_mu.npy, whiten_W.npy   the whitening (vectors)
    fallback_{side}_mean.npy   the mean fallback vector of each side (fallback)
    topics.json, topics.npz    the text components (topics)
    token_vocab.json           the token vocabulary (tokens)

The tables are not saved: a loaded featurizer starts with empty ones and fills them with the texts
it transforms (the vector cache keeps their encodings).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from embeddings.tokens import TokenVocab
from embeddings.topics import TextComponents
from embeddings.whitening import Whitening

META = "featurizer.json"
WHITENING = "whiten"  # the prefix of its two arrays
TOPICS = "topics"     # the stem of its two files
TOKEN_VOCAB = "token_vocab.json"


def fallback_mean_file(side: str) -> str:
    return f"fallback_{side}_mean.npy"


def save(feat, directory: str | Path) -> Path:
    """Write `feat`'s fitted state into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"config": asdict(feat.cfg),
            "text_model_id": feat.vectors.encoder.encoder.model_id if feat.vectors is not None else None,
            "sentence_model_id": feat.fallback.encoder.encoder.model_id if feat.fallback is not None else None,
            "widths": feat.widths, "tokens": feat.token_spec,
            "fitted_on": "unique texts of the training days"}
    (directory / META).write_text(json.dumps(meta, indent=2))
    if feat.vectors is not None:
        feat.vectors.whitening.save(directory, WHITENING)
    if feat.fallback is not None:
        for side, mean in feat.fallback.mean.items():
            np.save(directory / fallback_mean_file(side), mean)
    if feat.topics is not None:
        feat.topics.components.save(directory / TOPICS)
    if feat.tokens is not None:
        feat.tokens.vocab.save(directory / TOKEN_VOCAB)
    return directory


def saved_config(directory: str | Path) -> dict:
    """The TextConfig (as a dict) a saved featurizer was fitted with."""
    return json.loads((Path(directory) / META).read_text())["config"]


def restore(feat, directory: str | Path) -> None:
    """Read the fitted state saved in `directory` into `feat`, built from its saved config."""
    directory = Path(directory)
    if feat.vectors is not None:
        feat.vectors.whitening = Whitening.load(directory, WHITENING)
    if feat.fallback is not None:
        for side in feat.fallback.keys:
            feat.fallback.mean[side] = np.load(directory / fallback_mean_file(side))
    if feat.topics is not None:
        feat.topics.components = TextComponents.load(directory / TOPICS)
    if feat.tokens is not None:
        feat.tokens.vocab = TokenVocab.load(directory / TOKEN_VOCAB)
