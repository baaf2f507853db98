"""Opens a multi-objective study written by `nas` with Optuna and checks it against expectations:
directions, one value per objective, constraints, metric names, and `study.best_trials`.

Usage: optuna_multi_objective.py JOURNAL|URL EXPECTED_JSON (run by tests/multi_objective.rs with a
journal file, and by tests/postgres.rs with a postgresql+psycopg:// URL).
"""

import json
import sys

import optuna

# The same storage for a journal file or a URL as the single-objective checks.
from optuna_journal import storage


def main():
    path, expected = sys.argv[1], json.loads(sys.argv[2])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=expected["study"], storage=storage(path))
    directions = [d.name for d in study.directions]
    assert directions == expected["directions"], directions
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    assert states == expected["states"], states
    values = [t.values for t in trials]
    assert values == expected["values"], values
    # Optuna 5 reads the list `nas` writes as {"0": c0, "1": c1, ..}; earlier versions as a list.
    constraints = [
        list(t.constraints.values()) if isinstance(t.constraints, dict) else list(t.constraints)
        for t in trials
    ]
    assert constraints == expected["constraints"], constraints
    assert study.metric_names == expected["metric_names"], study.metric_names
    assert trials[0].user_attrs["latency"]["ms"] == expected["latency_ms"], trials[0].user_attrs
    pruned = [t for t in trials if t.state.name == "PRUNED"][0]
    inter = {str(k): v for k, v in pruned.intermediate_values.items()}
    assert inter == expected["pruned_intermediate"], inter
    best = sorted(t.number for t in study.best_trials)
    assert best == expected["best_trials"], (best, expected["best_trials"])
    print(f"optuna {optuna.__version__}: {len(trials)} trials, directions {directions}, best_trials {best}")


if __name__ == "__main__":
    main()
