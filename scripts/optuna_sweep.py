#!/usr/bin/env python3
"""Optuna's run of a `masklab sweep` file: the anchor masklab's own sweep is measured against.

Usage: optuna_sweep.py SPACE.toml DATA --out DIR --masklab PATH [--config base.toml] [key=value ...]

The same sweep file as `masklab sweep` (its [space], [budget], [objective], [sampler], [pruner]);
what cannot be mapped onto Optuna is refused with exit status 2. Each trial is
`masklab train DATA --out DIR/trial-NNN [--config ...] key=value... <params> train.monitor=<metric>`
(its output in DIR/trial-NNN.log); its metrics.jsonl is polled, each epoch's objective reported
to Optuna, and a trial the pruner stops is terminated. Its value is its best epoch's objective,
as masklab's worker takes it. Writes DIR/optuna.csv with sweep.csv's columns. Needs optuna==4.1.0
(scripts/setup.sh --bench); each run starts a fresh in-memory study (no resume)."""
import argparse, csv, json, math, os, signal, socket, subprocess, sys, time, tomllib
from pathlib import Path

import numpy as np
import optuna

import json_lines

METRICS = ["f1", "f1_mask", "f1_gender", "f1_age", "accuracy", "loss"]
# Each section's keys and their defaults (masklab's, which are Optuna's where it has them).
SECTIONS = {
    "budget": {"trials": None, "seconds": None},
    "objective": {"metric": "f1", "direction": None},
    "sampler": {"kind": "tpe", "seed": 0, "startup_trials": 10, "candidates": 24},
    "pruner": {"kind": "asha", "min_epochs": 1, "reduction_factor": 4},
}
POLL_S = 0.5


class SpecError(Exception):
    """A sweep file this script cannot run the way masklab would: exit status 2."""


class TrialFailed(Exception):
    """A trial whose run failed: recorded as failed, the study goes on (as masklab's)."""


def need(ok, message):
    if not ok:
        raise SpecError(message)


def is_int(v, least=-math.inf):
    return isinstance(v, int) and not isinstance(v, bool) and v >= least  # TOML's true is no integer


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def domain(at, d):
    """(kind, values, log) of one parameter, checked as masklab's space.rs checks it."""
    for field in d:
        need(field in ("choices", "int", "float", "log"), f"{at}: unknown field `{field}` (choices, int, float, log)")
    kinds = [k for k in ("choices", "int", "float") if k in d]
    need(len(kinds) == 1, f"{at}: give one domain: `choices = [...]`, `int = [low, high]` or `float = [low, high]`")
    kind, values, log = kinds[0], d[kinds[0]], d.get("log", False)
    need(isinstance(log, bool), f"{at}.log: expected true or false")
    if kind == "choices":
        need(not log, f"{at}: `log` applies to int and float ranges, not to choices")
        need(isinstance(values, list) and values and all(isinstance(v, (bool, int, float, str)) for v in values),
             f"{at}.choices: expected a non-empty list of strings, numbers or booleans")
        typed = {(type(v), v) for v in values}  # 1, 1.0 and true are different TOML values
        need(len(typed) == len(values), f"{at}.choices: a value is listed twice")
        # Python holds 1 == 1.0 == True, and Optuna finds a choice by equality: it would mix them up.
        need(len(set(values)) == len(values), f"{at}.choices: Optuna cannot tell apart 1, 1.0 and true")
        return kind, values, False
    ok = (lambda v: is_int(v)) if kind == "int" else is_number
    need(isinstance(values, list) and len(values) == 2 and all(ok(v) for v in values),
         f"{at}.{kind}: expected [low, high] of {'integers' if kind == 'int' else 'finite numbers'}")
    low, high = values
    need(low < high, f"{at}.{kind}: low {low} must be below high {high}")
    need(not log or (low >= 1 if kind == "int" else low > 0), f"{at}.{kind}: a log scale needs low {'of at least 1' if kind == 'int' else 'above 0'}")
    return kind, (values if kind == "int" else [float(low), float(high)]), log


def collect(table, prefix, out):
    """Dotted keys however TOML wrote them: a table holding a domain field is a parameter."""
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        need(isinstance(value, dict) and value, f"space.{key}: expected a domain such as {{ float = [0.0, 1.0] }}")
        if set(value) & {"choices", "int", "float", "log"}:
            out[key] = domain(f"space.{key}", value)
        else:
            collect(value, key, out)


def load_spec(path):
    try:
        with open(path, "rb") as f:
            spec = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"cannot read the sweep file: {e}") from e
    s, space = {}, {}
    for name in spec:
        need(name in SECTIONS or name == "space", f"unknown section [{name}] (a sweep file has [space], {', '.join(f'[{n}]' for n in SECTIONS)})")
        need(isinstance(spec[name], dict), f"{name}: expected a table")
    collect(spec.get("space", {}), "", space)
    need(space, 'no [space] parameters (e.g. "optim.lr" = { float = [1e-5, 1e-2], log = true })')
    for key in space:
        need(key not in ("train.monitor", "data.folds", "data.fold"), f"space.{key}: a sweep sets train.monitor itself and runs single (not k-fold) trials")
    for name, defaults in SECTIONS.items():
        for key in spec.get(name, {}):
            need(key in defaults, f"{name}.{key}: unknown field (expected {', '.join(defaults)})")
        s[name] = {**defaults, **spec.get(name, {})}
    b, o, sa, p = s["budget"], s["objective"], s["sampler"], s["pruner"]
    need(b["trials"] is not None or b["seconds"] is not None, "budget: give trials, seconds or both")
    need(b["trials"] is None or is_int(b["trials"], 1), "budget.trials: must be an integer of at least 1")
    need(b["seconds"] is None or (is_number(b["seconds"]) and b["seconds"] > 0), "budget.seconds: must be a positive number of seconds")
    need(o["metric"] in METRICS, f"objective.metric: {o['metric']!r} is none of {', '.join(METRICS)}")
    natural = "minimize" if o["metric"] == "loss" else "maximize"
    need(o["direction"] in (None, natural), f"objective.direction: {o['metric']} is {natural}d")
    o["direction"] = natural
    need(sa["kind"] in ("tpe", "random") and is_int(sa["seed"], 0) and is_int(sa["startup_trials"], 0) and is_int(sa["candidates"], 1),
         "sampler: kind is tpe or random; seed and startup_trials are integers from 0, candidates from 1")
    need(sa["seed"] < 2**32, f"sampler.seed: Optuna's samplers take seeds below 2^32 (NumPy's RandomState), got {sa['seed']}")
    need(p["kind"] in ("asha", "none") and is_int(p["min_epochs"], 1) and is_int(p["reduction_factor"], 2),
         "pruner: kind is asha or none; min_epochs (from 1) and reduction_factor (from 2) are integers")
    return space, s


def toml_value(v):
    """A parameter as a config override's value (masklab parses it as TOML)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v) if isinstance(v, str) else repr(v)  # JSON's string escapes are TOML's


def shown(v):
    """A value as sweep.csv shows it (Rust's Display: floats positional, shortest round trip)."""
    if isinstance(v, bool):
        return str(v).lower()
    return np.format_float_positional(v, trim="-") if isinstance(v, float) else str(v)


def epoch_values(path, metric):
    """{epoch: objective} from the complete lines of a run's metrics.jsonl (a line still being
    written waits for the next poll); an epoch's later line wins, as in masklab's History."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    values = {}
    for r in json_lines.parse(path, text[: text.rfind("\n") + 1].splitlines()):
        if r.get("kind") == "epoch" and r.get("val") is not None:
            v = r["val"].get(metric)
            values[r["epoch"]] = math.nan if v is None else float(v)  # null: not a number
    return values


def stop(proc):
    """SIGTERM to the run's process group (whatever it started goes too), then SIGKILL after 10 s."""
    os.killpg(proc.pid, signal.SIGTERM)  # the run is unreaped here: its group exists
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def objective_fn(args, space, metric, direction):
    def objective(trial):
        params = {}
        for key, (kind, values, log) in space.items():
            if kind == "choices":
                params[key] = trial.suggest_categorical(key, values)
            elif kind == "int":
                params[key] = trial.suggest_int(key, *values, log=log)
            else:
                params[key] = trial.suggest_float(key, *values, log=log)
        name = f"trial-{trial.number:03d}"
        run = args.out / name
        print(f"{name}: " + " ".join(f"{k}={shown(v)}" for k, v in params.items()), file=sys.stderr, flush=True)
        cmd = [str(args.masklab), "train", str(args.data), "--out", str(run), "--quiet"]
        cmd += ["--config", str(args.config)] if args.config else []
        cmd += args.overrides + [f"{k}={toml_value(v)}" for k, v in params.items()] + [f"train.monitor={metric}"]
        log = args.out / f"{name}.log"
        reported = {}
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                while True:
                    done = proc.poll() is not None  # read after exiting: its last epochs are in
                    for epoch, value in sorted(epoch_values(run / "metrics.jsonl", metric).items()):
                        if epoch in reported:
                            continue
                        reported[epoch] = value
                        trial.report(value, epoch)
                        trial.set_user_attr("epochs", len(reported))
                        print(f"{name} epoch {epoch}: {metric} {value:.4f}", file=sys.stderr, flush=True)
                        if trial.should_prune():
                            trial.set_user_attr("note", f"epoch {epoch}: {metric} {value:.4f}, pruned by successive halving")
                            print(f"{name}: pruned at epoch {epoch} ({metric} {value:.4f})", file=sys.stderr, flush=True)
                            raise optuna.TrialPruned()
                    if done:
                        break
                    time.sleep(POLL_S)
            except KeyboardInterrupt:
                trial.set_user_attr("note", "interrupted")
                raise
            finally:
                if proc.poll() is None:  # pruned or interrupted; an exited run's pid may be reused
                    stop(proc)
        lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
        if proc.returncode != 0:
            fail(trial, name, f"masklab train exited with {proc.returncode}: {lines[-1] if lines else 'no output'} ({log})")
        scores = [v for v in reported.values() if not math.isnan(v)]
        if not scores:
            fail(trial, name, f"{run / 'metrics.jsonl'}: no epoch with a validation score")
        best = max(scores) if direction == "maximize" else min(scores)
        print(f"{name}: complete, {metric} {best:.4f}", file=sys.stderr, flush=True)
        return best
    return objective


def fail(trial, name, note):
    trial.set_user_attr("note", note)
    print(f"{name}: failed: {note}", file=sys.stderr, flush=True)
    raise TrialFailed(note)


def write_csv(path, study, keys, started):
    """sweep.csv's columns: attempts is always 1 and worker this process (no resume, one worker);
    a value only for complete trials (Optuna keeps a pruned trial's last report as its value)."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    status = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "status", "value", "epochs", "started_s", "seconds", "attempts", "worker", *keys, "note"])
        for t in study.get_trials(deepcopy=False):
            start, end = t.datetime_start, t.datetime_complete
            w.writerow([t.number, status.get(t.state.name, t.state.name.lower()), shown(t.value) if t.state.name == "COMPLETE" else "",
                        t.user_attrs.get("epochs", 0), f"{start.timestamp() - started:.1f}" if start else "",
                        f"{(end - start).total_seconds():.1f}" if start and end else "", 1, worker,
                        *(shown(t.params[k]) if k in t.params else "" for k in keys), t.user_attrs.get("note", "")])
    os.replace(tmp, path)  # a reader never sees half a file


def refuse(message):
    print(f"optuna_sweep: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("space", type=Path, help="the sweep file (masklab sweep's)")
    ap.add_argument("data", type=Path, help="dataset folder holding train/")
    ap.add_argument("--out", type=Path, required=True, help="a new folder: trial-NNN runs, their logs, optuna.csv")
    ap.add_argument("--masklab", type=Path, required=True, help="the masklab binary")
    ap.add_argument("--config", type=Path, help="base TOML config of every trial")
    ap.add_argument("overrides", nargs="*", help="config overrides of every trial, under its parameters")
    args = ap.parse_intermixed_args()
    try:
        space, spec = load_spec(args.space)
    except SpecError as e:
        refuse(f"{args.space}: {e}")
    if not (args.masklab.is_file() and os.access(args.masklab, os.X_OK)):
        refuse(f"--masklab {args.masklab}: not an executable file")
    if args.out.exists() and any(args.out.iterdir()):
        refuse(f"--out {args.out}: not empty (this script does not resume a sweep; give a new folder)")
    args.out.mkdir(parents=True, exist_ok=True)
    sa, pr, metric, direction = spec["sampler"], spec["pruner"], spec["objective"]["metric"], spec["objective"]["direction"]
    # Independent TPE (multivariate=False, Optuna's default), as masklab's TPE models parameters one by one.
    sampler = (optuna.samplers.TPESampler(seed=sa["seed"], n_startup_trials=sa["startup_trials"], n_ei_candidates=sa["candidates"])
               if sa["kind"] == "tpe" else optuna.samplers.RandomSampler(seed=sa["seed"]))
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=pr["min_epochs"], reduction_factor=pr["reduction_factor"], min_early_stopping_rate=0)
              if pr["kind"] == "asha" else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported here (a failed one without a traceback)
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    keys, csv_path, started = sorted(space), args.out / "optuna.csv", time.time()
    interrupted = False
    try:
        study.optimize(objective_fn(args, space, metric, direction), n_trials=spec["budget"]["trials"], timeout=spec["budget"]["seconds"],
                       catch=(TrialFailed,), callbacks=[lambda s, t: write_csv(csv_path, s, keys, started)])
    except KeyboardInterrupt:  # the running trial's run is stopped (and failed): keep what was done
        print("optuna_sweep: interrupted", file=sys.stderr)
        interrupted = True
    write_csv(csv_path, study, keys, started)
    trials = study.get_trials(deepcopy=False)
    count = lambda state: sum(t.state == state for t in trials)
    S = optuna.trial.TrialState
    line = f"{len(trials)} trials: {count(S.COMPLETE)} complete, {count(S.PRUNED)} pruned, {count(S.FAIL)} failed"
    if count(S.COMPLETE):
        best = study.best_trial
        params = " ".join(f"{k}={shown(v)}" for k, v in best.params.items())
        line += f"; best trial-{best.number:03d} {metric} {best.value:.4f} ({params})"
    print(f"{line}; {time.time() - started:.1f} s; {csv_path}")
    sys.exit(130 if interrupted else 0)


if __name__ == "__main__":
    main()
