"""TOFU (Maini et al., 2024): load one configuration from a local JSON(L) directory or the hub.

Every row is checked for the columns its configuration needs, so a malformed file fails at load with
the file and column named rather than deep inside training or evaluation.
"""

from __future__ import annotations

from pathlib import Path

from unlearn.data.jsonl import explain_unreadable
from unlearn.errors import ConfigError, unknown_name

HUB_NAME = "locuslab/TOFU"
FORGET_SPLITS = ("forget01", "forget05", "forget10")
CONFIG_NAMES: tuple[str, ...] = (
    "full", "retain90", "retain95", "retain99",
    *FORGET_SPLITS, *(f"{s}_perturbed" for s in FORGET_SPLITS),
    "retain_perturbed", "real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed",
    "holdout01", "holdout05", "holdout10",
)


def required_columns(name: str) -> tuple[str, ...]:
    """Columns every row of configuration ``name`` must have (non-null).

    Raises:
        UnknownNameError: if ``name`` is not a TOFU configuration.
    """
    if name not in CONFIG_NAMES:
        raise unknown_name("TOFU configuration", name, CONFIG_NAMES)
    cols = ["question", "answer"]
    if name.endswith("_perturbed"):
        cols.append("perturbed_answer")
    if name == "retain_perturbed" or (name.startswith("forget") and name.endswith("_perturbed")):
        cols.append("paraphrased_answer")
    return tuple(cols)


def validate_rows(rows: list[dict], name: str, where: str) -> None:
    """Raise ConfigError naming ``where`` (a file or hub id) and the column if a row lacks one.

    ``perturbed_answer`` must also be a list of strings.
    """
    for i, row in enumerate(rows):
        for col in required_columns(name):
            if row.get(col) is None:
                raise ConfigError(
                    f"{where}: row {i} has no column {col!r}; configuration {name!r} needs "
                    f"{', '.join(required_columns(name))}"
                )
        pert = row.get("perturbed_answer")
        if pert is not None and (not isinstance(pert, list) or not all(isinstance(p, str) for p in pert)):
            raise ConfigError(f"{where}: row {i} column 'perturbed_answer' must be a list of strings, got {pert!r}")


def config_file(name: str, path: str | Path) -> Path:
    """The ``<name>.jsonl`` (preferred) or ``<name>.json`` file of configuration ``name`` in ``path``.

    Raises:
        ConfigError: if the directory or both files are missing.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ConfigError(f"TOFU directory {str(directory)!r} does not exist (or is not a directory)")
    candidates = [directory / f"{name}.jsonl", directory / f"{name}.json"]
    for file in candidates:
        if file.is_file():
            return file
    raise ConfigError(f"TOFU configuration {name!r} not found; looked for {', '.join(map(str, candidates))}")


def load_tofu_config(name: str, path: str | Path | None = None) -> list[dict]:
    """Rows of TOFU configuration ``name``, from directory ``path`` or, when None, the hub.

    Args:
        name: one of ``CONFIG_NAMES``.
        path: a directory holding ``<name>.jsonl`` or ``<name>.json``; None downloads
            ``locuslab/TOFU`` (network needed the first time).

    Returns:
        The rows as plain dicts.

    Raises:
        UnknownNameError: unknown configuration (lists the valid ones).
        ConfigError: missing directory or file, unreadable file, or a row without a required column.
    """
    import datasets  # heavy; only needed here

    required_columns(name)
    if path is None:
        where = f"{HUB_NAME}:{name}"
        ds = datasets.load_dataset(HUB_NAME, name, split="train")
    else:
        file = config_file(name, path)
        where = str(file)
        try:
            ds = datasets.load_dataset("json", data_files=str(file), split="train")
        except Exception as e:  # datasets raises many types for bad JSON, naming neither the file nor the line
            expected = f"one JSON object per line with {', '.join(required_columns(name))}"
            raise explain_unreadable(file, expected) or ConfigError(
                f"{where}: cannot be read as JSON lines ({type(e).__name__}: {e}); expected {expected}") from None
    rows = ds.to_list()
    validate_rows(rows, name, where)
    return rows
