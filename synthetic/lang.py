"""The language the generator writes its text in.

The world (users, items, clicks, truth) is drawn from the seed alone; a language only says which
word stands for each drawn word index and how words are joined. Nothing here draws from the
world's random generator, so `--lang zh` and `--lang en` give the same world.
"""

from dataclasses import dataclass

import numpy as np

from synthetic import vocab, vocab_zh


@dataclass(frozen=True)
class Language:
    name: str
    words: np.ndarray  # topic words, topic by topic in TOPIC_NAMES order
    generic: np.ndarray
    good: list[str]
    bad: list[str]
    word_sep: str  # between the words of a title
    title_comma: str  # a comma written inside a title
    list_seps: tuple[str, ...]  # entity list separators, taken in turn list by list
    capitalise: bool  # upper-case a title's first letter

    def join_title(self, words: list[str]) -> str:
        title = self.word_sep.join(words)
        return title[0].upper() + title[1:] if self.capitalise else title

    def list_sep(self, i: int) -> str:
        """Separator of the i-th entity list: lists alternate, so both forms appear."""
        return self.list_seps[i % len(self.list_seps)]


def _words(topics: dict[str, list[str]]) -> np.ndarray:
    return np.array([w for t in vocab.TOPIC_NAMES for w in topics[t]], dtype=object)


LANGUAGES: dict[str, Language] = {
    "en": Language("en", _words(vocab.TOPICS), np.array(vocab.GENERIC, dtype=object),
                   vocab.GOOD_WORDS, vocab.BAD_WORDS, word_sep=" ", title_comma=",",
                   list_seps=(",",), capitalise=True),
    # Chinese is written without spaces; entity lists use the ASCII or the full-width comma.
    "zh": Language("zh", _words(vocab_zh.TOPICS_ZH), np.array(vocab_zh.GENERIC_ZH, dtype=object),
                   vocab_zh.GOOD_WORDS_ZH, vocab_zh.BAD_WORDS_ZH, word_sep="", title_comma="，",
                   list_seps=(",", "，"), capitalise=False),
}
