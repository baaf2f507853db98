"""Opens a study written by `nas` with Optuna and checks it against expectations.

Usage: optuna_journal.py JOURNAL|URL EXPECTED_JSON (run by tests/journal.rs with a journal file,
and by tests/postgres.rs with a postgresql:// URL).
"""

import json
import math
import sys

import optuna


def storage(path):
    if "://" in path:
        return path
    journal = optuna.storages.journal if hasattr(optuna.storages, "journal") else None
    if journal is not None and hasattr(journal, "JournalFileBackend"):
        return optuna.storages.JournalStorage(journal.JournalFileBackend(path))
    return optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(path))


def main():
    path, expected = sys.argv[1], json.loads(sys.argv[2])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=expected["study"], storage=storage(path))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == expected["n_trials"], len(trials)
    assert study.direction.name == expected["direction"], study.direction
    states = [t.state.name for t in trials]
    assert states == expected["states"], states
    first = trials[0]
    for name, want in expected["params"].items():
        got = first.params[name]
        ok = math.isclose(got, want) if isinstance(want, float) else got == want
        assert ok and type(got) is type(want), (name, got, want)
    assert set(first.params) == set(expected["params"]), sorted(first.params)
    assert study.best_value == expected["best_value"], study.best_value
    assert study.best_trial.number == expected["best_number"]
    inter = {str(k): v for k, v in first.intermediate_values.items()}
    assert inter == expected["intermediate"], inter
    assert trials[1].value == expected["pruned_value"], trials[1].value
    assert trials[3].user_attrs["fail_reason"] == "interrupted", trials[3].user_attrs
    assert study.user_attrs["test_result"]["test_score"] == expected["test_score"]
    assert study.user_attrs["metric"] == "accuracy", study.user_attrs
    assert first.user_attrs["n_params"] == 1000, first.user_attrs
    # The objective's name, which optuna-dashboard shows on its axes (Study.set_metric_names).
    assert study.metric_names == expected["metric_names"], study.metric_names
    assert first.user_attrs["fold_curves"] == expected["fold_curves"], first.user_attrs
    assert trials[1].user_attrs["pruned_at"] == expected["pruned_at"], trials[1].user_attrs
    kinds = {type(d).__name__ for d in first.distributions.values()}
    assert kinds <= {"IntDistribution", "FloatDistribution", "CategoricalDistribution"}, kinds
    for t in trials:
        assert t.datetime_start is not None and t.datetime_complete is not None, t
        assert t.datetime_complete >= t.datetime_start, t
    print(f"optuna {optuna.__version__}: {len(trials)} trials, best {study.best_value}")


if __name__ == "__main__":
    main()
