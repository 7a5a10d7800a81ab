"""The Spark settings of the build's `local` dbt target, for a Spark session started outside dbt.

profiles.yml is the one place where they are written (how files are packed into tasks, the time
zone, the time parser policy, the driver memory, ...). A session that must read files as the build
reads them (the raw suite of expectations/) takes them from here, with the same CTR_* environment
overrides, instead of repeating them. The file is the checkout's, or the copy an installed wheel
carries under share/m2ctr/ (pyproject.toml ships it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from m2ctr.schema import find_shipped

PROFILE_NAME = "m2ctr"
TARGET = "local"


def _env_var(name: str, default: str | None = None) -> str:
    """dbt's env_var: the variable's value, else the default, else an error."""
    value = os.environ.get(name, default)
    if value is None:
        raise KeyError(f"profiles.yml: environment variable {name} is not set and has no default")
    return value


def find_profile() -> Path:
    """profiles.yml of the checkout, else the copy installed with the package."""
    return find_shipped("profiles.yml")


def local_spark_settings(
    keys: Iterable[str] | None = None, profile: Path | None = None
) -> dict[str, str]:
    """The `local` target's value of each Spark setting in `keys` (None: every one it sets),
    rendered as dbt renders it (`{{ env_var('CTR_...', default) }}`). A key the profile does not
    set is an error: the caller asks for the settings the build is known to make. `profile`: the
    project's by default."""
    from jinja2 import Environment, StrictUndefined

    path = profile or find_profile()
    output = yaml.safe_load(path.read_text())[PROFILE_NAME]["outputs"][TARGET]
    written = output["server_side_parameters"]
    env = Environment(undefined=StrictUndefined)
    settings = {}
    for key in written if keys is None else keys:
        if key not in written:
            raise KeyError(f"{path}: the {TARGET} target sets no {key}")
        settings[key] = env.from_string(str(written[key])).render(env_var=_env_var)
    return settings
