"""TextComponents: TF-IDF over words, then TruncatedSVD, fitted on one side's distinct texts.

Words come from embeddings.tokens.text_words, the token channel's own tokenisation.

The content tower and the LightGBM peer read the same components, fitted the same way on the
training days: each distinct text counts once (a user's fixed sequences are not weighted by
activity). With fewer words than components the missing components are zero, so the width is
fixed. Each component is divided by its standard deviation over the fitted texts: raw projections
of unit-length TF-IDF rows have a spread near 0.1, ten times below the standardised dense columns
a network reads beside them, and a network learns slowly from inputs that small (a tree does not
care). Fitted and loaded components transform through one path, `tfidf.transform(x) @ C.T / scale`,
so a saved run scores exactly as it trained. Nothing is pickled: words as JSON, idf and C as .npz.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embeddings.tokens import text_words

N_COMPONENTS = 32
MIN_SPREAD = 1e-3


def _vectorizer(vocabulary=None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    # min_df=1: counts are over distinct texts, where a topic word may sit in a single one.
    # The words are the token channel's (text_words), so Chinese is segmented the same way.
    return TfidfVectorizer(analyzer=text_words, max_features=100_000, sublinear_tf=True,
                           dtype=np.float32, vocabulary=vocabulary)


class TextComponents:
    def __init__(self, n_components: int = N_COMPONENTS, seed: int = 0):
        self.n_components = n_components
        self.seed = seed
        self.tfidf = None
        self.components: np.ndarray | None = None  # [k, n_words], k <= n_components
        self.scale: np.ndarray | None = None  # [k], each component's spread over the fitted texts

    def fit(self, texts: list[str]) -> TextComponents:
        from sklearn.decomposition import TruncatedSVD

        self.tfidf = _vectorizer()
        try:
            x = self.tfidf.fit_transform(texts)
        except ValueError:  # sklearn: "empty vocabulary"
            raise ValueError("text components: the training days' text holds no word") from None
        k = min(self.n_components, x.shape[1] - 1, x.shape[0] - 1)
        if k < 1:
            raise ValueError(f"text components: too few distinct texts or words on the training days ({x.shape})")
        svd = TruncatedSVD(k, algorithm="randomized", random_state=self.seed).fit(x)
        self.components = svd.components_.astype(np.float32)
        spread = (x @ self.components.T).std(axis=0)
        # a component (nearly) constant over the texts is left as it is, not blown up
        self.scale = np.where(spread > MIN_SPREAD, spread, 1.0).astype(np.float32)
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        """[len(texts), n_components] float32; a text with no known word is all zeros."""
        out = np.zeros((len(texts), self.n_components), np.float32)
        if texts:
            out[:, : len(self.components)] = self.tfidf.transform(texts) @ self.components.T / self.scale
        return out

    def save(self, path: Path) -> None:
        words = sorted(self.tfidf.vocabulary_, key=self.tfidf.vocabulary_.get)
        path.with_suffix(".json").write_text(json.dumps({"words": words, "n_components": self.n_components}))
        np.savez(path.with_suffix(".npz"), idf=self.tfidf.idf_, components=self.components, scale=self.scale)

    @classmethod
    def load(cls, path: Path) -> TextComponents:
        meta = json.loads(path.with_suffix(".json").read_text())
        arrays = np.load(path.with_suffix(".npz"))
        self = cls(meta["n_components"])
        self.tfidf = _vectorizer(meta["words"])
        self.tfidf.idf_ = arrays["idf"]
        self.components = arrays["components"]
        # runs saved before the components were scaled read them unscaled, as they trained
        self.scale = arrays["scale"] if "scale" in arrays else np.ones(len(self.components), np.float32)
        return self
