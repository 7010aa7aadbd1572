"""One cold start: `python -P bench/cold_child.py MODULE EVENT_JSON OUT_JSON FUNCTION TIMEOUT`.

A fresh interpreter imports the handler module and serves one event, as a new Lambda container
does; the timings, the answer's status and the peak RSS go to OUT_JSON, with how many of the
modules it loaded came from PACKAGE (the directory where the code lives, PYTHONPATH) and how many
of those had no bytecode beside them.

Run as a script, and imports nothing of the project: a built package must hold all it needs, so
the child puts nothing but that package on sys.path (bench/cold_start.py).
"""

import gc
import importlib
import importlib.util
import json
import os
import resource
import sys
import time
import uuid


class LocalContext:
    """What handlers and Powertools read of Lambda's context (devstack/lambda_context.py, which
    a built package does not hold)."""

    def __init__(self, function_name: str, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}")
        self.function_version = "$LATEST"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def bytecode_use(package: str) -> dict:
    """Modules loaded from the package, and those without a .pyc for this interpreter."""
    loaded = missing = 0
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if not path.endswith(".py") or not path.startswith(package + os.sep):
            continue
        loaded += 1
        if not os.path.exists(importlib.util.cache_from_source(path)):
            missing += 1
    return {"modules": loaded, "without_bytecode": missing}


class GcClock:
    """Time spent in the cyclic garbage collector, per generation, while the child runs."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started


def main() -> None:
    gc_clock = GcClock()
    module_name, event_path, out_path, function, timeout = sys.argv[1:6]
    with open(event_path) as fh:
        event = json.load(fh)
    context = LocalContext(function, float(timeout))
    started, cpu_started = time.perf_counter(), time.process_time()
    module = importlib.import_module(module_name)
    imported = time.perf_counter()
    error = None
    try:
        answer = module.lambda_handler(event, context)
    except Exception as exc:  # a handler that raises still had its cold start
        answer, error = None, type(exc).__name__
    served, cpu_served = time.perf_counter(), time.process_time()
    status = answer.get("statusCode") if isinstance(answer, dict) else None
    outcome = (f"raised {error}" if error else f"HTTP {status}" if status is not None
               else "summary " + json.dumps(answer, default=str)[:80] if isinstance(answer, dict)
               else type(answer).__name__)
    with open(out_path, "w") as fh:
        json.dump({"import_s": imported - started, "first_event_s": served - imported,
                   "total_s": served - started, "cpu_s": cpu_served - cpu_started,
                   "outcome": outcome, "maxrss_mb": peak_rss_mb(),
                   "gc_s": gc_clock.seconds,
                   **bytecode_use(os.path.realpath(os.environ.get("PYTHONPATH", ".")))},
                  fh)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent across fork+exec, so a small child of a big parent would report the parent's."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
