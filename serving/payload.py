"""The request and response bodies of `POST /score`, built from the raw column lists of m2ctr.schema.

A request carries what a raw log record carries, minus time and label: the user with their text
fields, and candidate items with their scene, text fields and deep features. Fields are named and
typed as in the raw format; unknown fields are rejected rather than ignored, so a misspelt column
never silently scores as "no text". Deep features are optional (absent or null is 0.0, as for an
empty or missing CSV field); everything else is required (text may be the empty string).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, create_model

from m2ctr.schema import DEEP_FEATURES, ITEM_TEXT_COLUMNS, SCENES, USER_TEXT_COLUMNS


def _not_blank(value: str) -> str:
    # staging rejects an id that is empty after trimming (missing_user_id / missing_item_id)
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


Id = Annotated[StrictStr, AfterValidator(_not_blank)]  # opaque, used as given (not trimmed)
Text = StrictStr
# JSON has no NaN or infinity, Python's parser does: refuse them like any other non-number.
Deep = Annotated[float | None, Field(allow_inf_nan=False)]
Scene = Literal[SCENES]  # Literal over the tuple: exactly the scenes of the format

_STRICT = ConfigDict(extra="forbid")

User = create_model(
    "User", __config__=_STRICT,
    user_id=(Id, ...),
    **{c: (Text, ...) for c in USER_TEXT_COLUMNS},
)

Item = create_model(
    "Item", __config__=_STRICT,
    item_id=(Id, ...),
    scene=(Scene, ...),
    **{c: (Text, ...) for c in ITEM_TEXT_COLUMNS},
    **{c: (Deep, 0.0) for c in DEEP_FEATURES},
)


def score_request(max_candidates: int) -> type[BaseModel]:
    """The body of POST /score with at most `max_candidates` items (a limit chosen at start-up)."""
    return create_model(
        "ScoreRequest", __config__=_STRICT,
        user=(User, ...),
        items=(list[Item], Field(..., max_length=max_candidates)),
    )


class ScoreResponse(BaseModel):
    scores: list[float] = Field(description="click probability of each item, in the items' order")
    model: str = Field(description="the run's model (dnn, mmoe, ple, fusion)")
    features_as_of: str = Field(description="the snapshot's date: history up to the day before it")
