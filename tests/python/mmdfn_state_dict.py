"""Writes the names and shapes of `mmdfn_torch.MMDFN`'s `state_dict()` at
MM-DFN's IEMOCAP sizes (dims 100/1582/342, 6 classes, 2 speakers, hidden
200, graph hidden 100, 16 layers) to worker/tests/golden/mmdfn_state_dict.json,
which worker/tests/weights.rs compares with sigsweep's `mmdfn` weights file.

    python3 mmdfn_state_dict.py > ../../worker/tests/golden/mmdfn_state_dict.json
"""

import json

from mmdfn_torch import MMDFN

model = MMDFN()
print(json.dumps({
    "source": "tests/python/mmdfn_state_dict.py (tests/python/mmdfn_torch.py, IEMOCAP sizes, 16 layers)",
    "tensors": {k: list(v.shape) for k, v in sorted(model.state_dict().items())},
}, indent=1))
