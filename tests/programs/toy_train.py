"""A dependency-free "training program" for sigsweep's end-to-end tests of
`[model] name = "command"`: it reports per-epoch metrics that depend only on
its arguments (lr, seed) through clients/python/sigsweep_report.py, and can
misbehave on request (--mode).

    python3 toy_train.py --lr 0.1 --seed 3 --epochs 4 [--mode MODE]

Modes: ok, final (selects its own epoch), fail (exits 3 after writing to
stderr), nan (a NaN loss), malformed (a broken metrics line), silent (no
report), noselect (no selection metric), notest (no reported test metric), regex (prints lines instead of
writing SIGSWEEP_METRICS), stubborn (ignores SIGTERM, starts a child that
does too, then sleeps), slow (sleeps between epochs), predictions (also
writes $SIGSWEEP_OUTPUT_DIR/predictions.jsonl), replay (writes the epoch
lines of the JSON file --replay), linger (trains as ok, then exits leaving a
child that holds its stdout and sleeps), killguard (kills its parent, the
worker's guard shell, then sleeps), killworker (kills the worker process,
its grandparent, then sleeps). With --pidfile it also starts a child that
ignores SIGTERM and writes "PID CHILD_PID" there.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
from sigsweep_report import report_epoch, report_final  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--pidfile", default="")
    ap.add_argument("--replay", default="")
    a = ap.parse_args()
    rng = random.Random(a.seed * 1000 + int(a.lr * 1e6))
    print("toy_train starting: lr=%g seed=%d params=%s CUDA_VISIBLE_DEVICES=%r" % (
        a.lr, a.seed, os.environ.get("SIGSWEEP_PARAMS"), os.environ.get("CUDA_VISIBLE_DEVICES")), flush=True)
    if a.mode == "replay":
        with open(a.replay) as src, open(os.environ["SIGSWEEP_METRICS"], "a") as f:
            for line in json.load(src):
                f.write(json.dumps(line) + "\n")
        return 0
    child = None
    if a.pidfile:
        # A child that ignores SIGTERM, as data-loader workers may.
        child = subprocess.Popen([sys.executable, "-c",
                                  "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        with open(a.pidfile + ".tmp", "w") as f:
            f.write("%d %d\n" % (os.getpid(), child.pid))
        os.replace(a.pidfile + ".tmp", a.pidfile)
    if a.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        report_epoch(1, 1.0, valid={"acc": 0.5}, test={"acc": 0.5})
        time.sleep(600)
        return 0
    if a.mode == "silent":
        return 0
    if a.mode in ("killguard", "killworker"):
        report_epoch(1, 1.0, valid={"acc": 0.5}, test={"acc": 0.5})
        victim = os.getppid()
        if a.mode == "killworker":
            with open("/proc/%d/stat" % victim) as f:
                victim = int(f.read().rsplit(")", 1)[1].split()[1])
        os.kill(victim, signal.SIGKILL)
        time.sleep(3600)
        return 0
    if a.mode == "fail":
        report_epoch(1, 1.0, valid={"acc": 0.5}, test={"acc": 0.5})
        for i in range(30):
            print("traceback line %d" % i, file=sys.stderr)
        print("RuntimeError: CUDA out of memory (toy)", file=sys.stderr)
        return 3
    base = 0.5 + 0.3 * min(a.lr, 1.0)
    for epoch in range(1, a.epochs + 1):
        loss = 1.0 / epoch + rng.random() * 0.01
        valid = base + 0.05 * epoch / a.epochs + rng.random() * 0.02
        test = valid - 0.01 + rng.random() * 0.02
        if a.mode == "nan" and epoch == 2:
            with open(os.environ["SIGSWEEP_METRICS"], "a") as f:
                f.write('{"epoch": 2, "train_loss": NaN, "valid": {"acc": 0.5}, "test": {"acc": 0.5}}\n')
            return 0
        if a.mode == "malformed" and epoch == 2:
            with open(os.environ["SIGSWEEP_METRICS"], "a") as f:
                f.write('{"epoch": 2, "train_loss": 0.5, "valid": \n')
            return 0
        if a.mode == "regex":
            print("epoch %d loss %.6f val_acc %.6f test_acc %.6f" % (epoch, loss, valid, test), flush=True)
        elif a.mode == "noselect":
            report_epoch(epoch, loss, valid={"other": valid}, test={"acc": test})
        elif a.mode == "notest":
            report_epoch(epoch, loss, valid={"acc": valid}, test={"other": test})
        else:
            report_epoch(epoch, loss, valid={"acc": valid, "f1": valid - 0.02}, test={"acc": test, "f1": test - 0.02})
        if a.mode == "slow":
            time.sleep(1.0)
    if a.mode == "final":
        report_final(1, valid={"acc": 0.123}, test={"acc": 0.456, "f1": 0.4})
    if child is not None:
        child.kill()
        child.wait()
    if a.mode == "linger":
        # Inherits stdout and stderr, and is not waited for.
        subprocess.Popen(["sleep", "3600"])
    if a.mode == "predictions":
        out = os.environ["SIGSWEEP_OUTPUT_DIR"]
        with open(os.path.join(out, "predictions.jsonl"), "w") as f:
            for i in range(10):
                f.write(json.dumps({"id": "ex%d" % i, "gold": i % 2, "pred": (i + a.seed) % 2}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
