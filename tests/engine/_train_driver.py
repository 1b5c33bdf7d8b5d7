"""``train_net.py`` for subprocess tests (its command line, :func:`train_net.run`), with faults:

* ``OXNET_TEST_PAUSE_AT=N``: training waits after iteration N until a stop signal has arrived
  (printing ``PAUSED AT N`` to stdout first), so that a test can signal it at a known step;
* ``OXNET_TEST_NAN=RANK:ITER:TERM``: the loss term TERM is NaN at iteration ITER on process RANK.
"""

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from detectron2.engine import HookBase  # noqa: E402

import train_net  # noqa: E402
from oxnet.engine import OXnetTrainer  # noqa: E402


class _PauseUntilSignal(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter != self.iteration:
            return
        print(f"PAUSED AT {self.iteration}", flush=True)
        deadline = time.monotonic() + 120
        while self.trainer._stop_signals.received is None and time.monotonic() < deadline:
            time.sleep(0.02)


if os.environ.get("OXNET_TEST_PAUSE_AT"):
    _build_hooks = OXnetTrainer.build_hooks

    def build_hooks(self):
        return _build_hooks(self) + [_PauseUntilSignal(int(os.environ["OXNET_TEST_PAUSE_AT"]))]

    OXnetTrainer.build_hooks = build_hooks

if os.environ.get("OXNET_TEST_NAN"):
    from detectron2.utils import comm
    from detectron2.utils.events import get_event_storage

    from oxnet.modeling.meta_arch import OXNet

    _rank, _iter, _term = os.environ["OXNET_TEST_NAN"].split(":")
    _forward = OXNet.forward

    def forward(self, batched_inputs):
        out = _forward(self, batched_inputs)
        if self.training and comm.get_rank() == int(_rank) and get_event_storage().iter == int(_iter):
            out = dict(out, **{_term: out[_term] * float("nan")})
        return out

    OXNet.forward = forward

if __name__ == "__main__":
    train_net.run()
