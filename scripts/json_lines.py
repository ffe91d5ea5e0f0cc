"""The JSON records of benchmark result files, shared by the summary scripts: lines that do not
start with "{" (progress printed beside the results) are passed over; a line that starts like a
record but is not JSON stops with its file and line."""
import json, sys


def records(paths):
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not JSON: {e}")
