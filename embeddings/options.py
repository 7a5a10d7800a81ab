"""The content options of a run, declared once.

Each field of `TextConfig` is one option: its type, its default and, for the options a run takes on
the command line, its help (and choices). `python -m trainer fit` makes a flag of every field with
a help (`--<name>`, or the `flag` its metadata names); `FitConfig.content` holds a `TextConfig`,
`TextFeaturizer` reads it and the run's `config.json` records it. Adding an option is one field
here, plus the code that reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from embeddings.backends import CHOICES, DEFAULT_BACKEND
from embeddings.encoder import POOLINGS
from embeddings.topics import N_COMPONENTS

# The parts of the content side; a model that uses text (fusion) has them all.
PARTS = ("tokens", "topics", "vectors", "fallback")


def option(default, help: str, *, flag: str | None = None, choices=None, metavar: str | None = None):
    """A field that is also a command-line option of `trainer fit`."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "metavar": metavar})


@dataclass(frozen=True)
class TextConfig:
    # -- the parts
    tokens: bool = option(False, "content ids: entity tokens and title words, one table shared by user and item")
    topics: bool = option(False, "TF-IDF -> SVD components of the user and item text, fitted on the training days")
    vectors: bool = option(True, "whitened encoder vectors of the user and item text", flag="text")
    fallback: bool = option(True, "also fallback sentence vectors for zero/few users and items")
    # -- their settings
    token_min_count: int = option(3, "training-row count a token needs for its own id")
    token_max_vocab: int = option(100_000, "most frequent tokens kept")
    token_buckets: int = option(2048, "shared hash buckets for rare and unseen tokens")
    tokens_per_field: int = option(16, "tokens kept per text field")
    topic_dim: int = option(N_COMPONENTS, "text components (TF-IDF -> SVD) per text")
    text_model: str | None = option(None, "text encoder (default: the bundled all-MiniLM-L6-v2)",
                                    metavar="NAME_OR_PATH")
    pooling: str = option("last4-mean", "token pooling of the text encoder", choices=POOLINGS)
    whiten_dim: int = option(16, "whitened vector width: the leading directions kept (README, \"How wide the "
                                 "whitened vectors are\")")
    sentence_model: str | None = option(None, "fallback sentence encoder (default: the bundled all-MiniLM-L6-v2)",
                                        metavar="NAME_OR_PATH")
    cache_dir: str = option(".cache/text_vectors", "text vector cache (\"\": none)")
    encoder_backend: str = option(DEFAULT_BACKEND, "how both text encoders run: auto (openvino-int8 for local models "
                                  "on the CPU with m2ctr[fast] installed, else torch; the run records which), torch "
                                  "(float32), torch-bf16, onnx, onnx-int8, openvino, openvino-int8 (models exported "
                                  "once from the local weights, cached), static (token vectors distilled once from the "
                                  "model: fastest, least faithful); see README, Fast encoding", choices=CHOICES)
    # -- how texts are encoded: not options of a run
    max_tokens: int = 64
    batch_size: int = 128
    device: str = "auto"

    @classmethod
    def from_dict(cls, cfg: Mapping | None) -> TextConfig:
        # Keys that are not ours and None values (option not given) fall back to the defaults.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (cfg or {}).items() if k in known and v is not None})

    @classmethod
    def asked_for(cls, **changes) -> TextConfig:
        """No part on unless named in `changes`: what a run without a text model starts from."""
        return cls(**{**dict.fromkeys(PARTS, False), **changes})

    def replace(self, **changes) -> TextConfig:
        return dataclasses.replace(self, **changes)

    def with_all_parts(self) -> TextConfig:
        return self.replace(**dict.fromkeys(PARTS, True))

    def any_part(self) -> bool:
        return any(getattr(self, p) for p in PARTS)


def cli_options() -> list[dataclasses.Field]:
    """The fields that are command-line options, in declaration order."""
    return [f for f in fields(TextConfig) if "help" in f.metadata]


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name
