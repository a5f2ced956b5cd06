"""Report a training program's metrics to sigsweep (no dependencies).

    from sigsweep_report import report_epoch, report_final
    report_epoch(epoch, train_loss, valid={"f1_weighted": 0.62}, test={"f1_weighted": 0.60})

Each call appends one JSON line to the file named by SIGSWEEP_METRICS. Epochs
are 1-based and strictly increasing; sigsweep selects the epoch with the
sweep's [metrics] rule. A program that selects its own epoch ends with
report_final(...), which is then the trial's result. Outside sigsweep
(SIGSWEEP_METRICS unset) and on torchrun ranks other than 0, nothing is
written. Copy this file into your repository or put it on PYTHONPATH.
"""
import json
import math
import os


def _write(record):
    path = os.environ.get("SIGSWEEP_METRICS")
    if not path or os.environ.get("RANK", "0") != "0":
        return
    line = json.dumps(record, allow_nan=False)  # NaN/inf raise here, not in sigsweep
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def _metrics(m):
    return {str(k): float(v) for k, v in (m or {}).items()}


def report_epoch(epoch, train_loss, valid=None, test=None, **extra):
    """One epoch's mean training loss and its validation and test metrics."""
    if not math.isfinite(float(train_loss)):
        raise ValueError("train_loss of epoch %d is %r" % (epoch, train_loss))
    _write(dict(extra, epoch=int(epoch), train_loss=float(train_loss),
                valid=_metrics(valid), test=_metrics(test)))


def report_final(epoch, valid=None, test=None):
    """The epoch the program selected itself; the trial's result."""
    _write({"final": {"epoch": int(epoch), "valid": _metrics(valid), "test": _metrics(test)}})


def params():
    """The trial's parameters (SIGSWEEP_PARAMS), as a dict."""
    return json.loads(os.environ.get("SIGSWEEP_PARAMS", "{}"))
