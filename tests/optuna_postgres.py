"""Optuna's side of tests/postgres.rs, on a PostgreSQL database `nas` writes.

Usage:
  optuna_postgres.py add URL STUDY N        an Optuna process adds N trials to the study
  optuna_postgres.py schema URL             Optuna creates its schema (and a study) in an empty database
  optuna_postgres.py dashboard URL STUDY N  optuna-dashboard's API lists the study with N trials
"""

import json
import sys
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna


def add(url, study, n):
    s = optuna.load_study(study_name=study, storage=url)
    s.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=int(n))
    print(f"optuna {optuna.__version__} added {n} trials; the study has {len(s.trials)}")


def schema(url):
    s = optuna.create_study(study_name="made-by-optuna", storage=url)
    s.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def dashboard(url, study, n):
    from optuna_dashboard import wsgi

    server = make_server("127.0.0.1", 0, wsgi(url), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def get(path):
        with urllib.request.urlopen(base + path, timeout=60) as r:
            assert r.status == 200, (path, r.status)
            return json.loads(r.read())

    studies = get("/api/studies")["study_summaries"]
    found = [s for s in studies if s["study_name"] == study]
    assert len(found) == 1, studies
    detail = get(f"/api/studies/{found[0]['study_id']}?after=0")
    trials = detail["trials"]
    assert len(trials) == int(n), trials
    # The objective's name on the axes: Optuna's `study:metric_names`.
    assert detail.get("objective_names") == ["cv accuracy"], detail.get("objective_names")
    states = [t["state"] for t in trials]
    assert states == ["Complete", "Pruned"], states
    assert detail["has_intermediate_values"], detail
    params = sorted(p["name"] for p in trials[0]["params"])
    print(f"optuna-dashboard: study `{study}`, {len(trials)} trials {states}, params {params[:3]}...")
    server.shutdown()


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    command, args = sys.argv[1], sys.argv[2:]
    {"add": add, "schema": schema, "dashboard": dashboard}[command](*args)
