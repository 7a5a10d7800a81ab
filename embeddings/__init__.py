"""Text features for m2ctr: text building, encoders, on-disk vector cache, whitening,
cold-start fallback vectors. The trainer uses ``TextFeaturizer``."""

from embeddings.featurizer import TextConfig, TextFeaturizer

__all__ = ["TextConfig", "TextFeaturizer"]
