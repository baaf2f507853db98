"""A Python Optuna process that appends to a journal `nas` writes too (run by tests/journal.rs).

Usage:
  optuna_journal_writer.py write JOURNAL STUDY N READY   N trials, after creating the file READY
  optuna_journal_writer.py check JOURNAL STUDY TOTAL     every trial is whole, and whose it is
  optuna_journal_writer.py hold JOURNAL SECONDS READY    holds Optuna's journal lock that long
"""

import time

import sys

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend


def storage(path):
    # The default lock of JournalFileBackend: the `<journal>.lock` symbolic link.
    return JournalStorage(JournalFileBackend(path))


def write(path, study, n, ready):
    s = optuna.load_study(study_name=study, storage=storage(path))
    open(ready, "w").close()
    s.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=int(n))


def check(path, study, total):
    trials = optuna.load_study(study_name=study, storage=storage(path)).get_trials(deepcopy=False)
    assert len(trials) == int(total), len(trials)
    assert [t.number for t in trials] == list(range(len(trials)))
    ours = [t for t in trials if "seed" in t.user_attrs]
    for t in trials:
        assert t.state.name == "COMPLETE", t
        assert "x" in t.params, t
        # nas's own trial attributes landed on nas's trials only.
        assert ("nas_owner_start" in t.system_attrs) == ("seed" in t.user_attrs), t
    print(f"optuna {optuna.__version__}: {len(trials)} trials, {len(ours)} of nas, {len(trials) - len(ours)} of Optuna")


def hold(path, seconds, ready):
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(path)
    lock.acquire()
    open(ready, "w").close()
    time.sleep(float(seconds))
    lock.release()


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    {"write": write, "check": check, "hold": hold}[sys.argv[1]](*sys.argv[2:])
