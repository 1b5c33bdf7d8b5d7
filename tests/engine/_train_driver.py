"""``train_net.py`` for subprocess tests: the same command line and ``main``; with
``OXNET_TEST_PAUSE_AT=N`` training waits after iteration N until a stop signal has arrived (printing
``PAUSED AT N`` to stdout first), so that a test can signal it at a known step."""
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import train_net  # noqa: E402
from detectron2.engine import HookBase  # noqa: E402
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

if __name__ == "__main__":
    args = train_net.parse_args()
    train_net.launch(train_net.main, args.num_gpus, num_machines=args.num_machines,
                     machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,),
                     timeout=train_net.datetime.timedelta(seconds=args.dist_timeout))
