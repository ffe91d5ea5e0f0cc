"""The JSON records of result files, shared by the summary scripts and scripts/optuna_sweep.py:
lines that do not start with "{" (progress printed beside the results) are passed over; a line
that starts like a record but is not JSON stops with its file and line."""
import json, sys


def records(paths):
    for path in paths:
        with open(path) as f:
            yield from parse(path, f)


def parse(path, lines):
    """The records of `lines` (numbered from 1), read from `path` (named in errors)."""
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"{path}:{n}: not JSON: {e}")
