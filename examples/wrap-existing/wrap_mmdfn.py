"""Runs MM-DFN's unmodified `run_train_erc.py` (github zerohd4869/MM-DFN,
code/) as a sigsweep training program: its arguments pass through, its
output stays in the trial's log, and each epoch line it prints becomes a
report. Put this file (and clients/python/sigsweep_report.py) next to
run_train_erc.py:

    argv = ["python3", "wrap_mmdfn.py", "--lr", "{lr}", "--seed", "{seed}", "--valid_rate", "0.1"]

MM-DFN prints 0-based epochs and percentages rounded to two decimals; the
wrapper reports 1-based epochs and fractions (the rounding stays).
"""
import re
import subprocess
import sys

from sigsweep_report import report_epoch

LINE = re.compile(r"epoch: (\d+), train_loss: (\S+),.*valid_acc: (\S+), valid_fscore: (\S+),.*test_acc: (\S+), test_fscore: (\S+),")
proc = subprocess.Popen([sys.executable, "run_train_erc.py", *sys.argv[1:]], stdout=subprocess.PIPE, text=True)
for line in proc.stdout:
    print(line, end="", flush=True)
    if m := LINE.search(line):
        e, loss, *scores = m.groups()
        valid_acc, valid_f1, test_acc, test_f1 = (float(s) / 100 for s in scores)
        report_epoch(int(e) + 1, float(loss), valid={"accuracy": valid_acc, "f1_weighted": valid_f1},
                     test={"accuracy": test_acc, "f1_weighted": test_f1})
sys.exit(proc.wait())
