"""Search spaces: a small YAML schema, validated at load, and its Optuna define-by-run function.

One module per concern: ``schema`` (the typed objects and the YAML schema in its docstring), ``parse``
(YAML -> SearchSpace), ``overrides`` (``key=value`` on a space), ``checks`` (cross-field checks),
``dryrun`` (the configs built at load), ``sampling`` (define-by-run, trial seeds, a trial's RunConfig),
``keys`` (the run-config keys a space may name).
"""

from sweeps.space.checks import validate_space
from sweeps.space.keys import run_config_keys
from sweeps.space.parse import (
    SPACES_DIR,
    TOP_LEVEL_KEYS,
    load_space,
    load_sweep_space,
    resolve_space_path,
    space_from_dict,
)
from sweeps.space.sampling import (
    DefineByRun,
    define_by_run,
    derive_trial_seed,
    replicate_seeds,
    common_seed,
    confirm_seed,
    trial_run_config,
    trial_seed,
)
from sweeps.space.schema import (
    DISTRIBUTIONS,
    Budget,
    Confirm,
    Constraint,
    EarlyStopping,
    Objective,
    Param,
    SearchSpace,
)

__all__ = [
    "DISTRIBUTIONS", "SPACES_DIR", "TOP_LEVEL_KEYS", "Budget", "Confirm", "Constraint", "DefineByRun", "EarlyStopping", "Objective",
    "Param", "SearchSpace", "define_by_run", "derive_trial_seed", "replicate_seeds", "common_seed", "confirm_seed", "load_space", "load_sweep_space", "resolve_space_path",
    "run_config_keys", "space_from_dict", "trial_run_config", "trial_seed", "validate_space",
]
