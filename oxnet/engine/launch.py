"""``launch`` that also runs several processes on a CPU-only machine (gloo).

detectron2's own ``launch`` asserts CUDA and uses NCCL; on CUDA machines this delegates to it.
"""

import contextlib
import datetime
import logging
import os
import signal

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def launch(
    main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(), timeout=None
):
    """Run ``main_func(*args)`` in ``num_gpus_per_machine * num_machines`` processes.

    With CUDA available this is detectron2's ``launch``. Without it, ``num_gpus_per_machine`` is the
    number of CPU processes per machine, joined by the gloo backend; ``timeout`` (a ``timedelta``,
    default 30 minutes) bounds every collective operation, so that a process whose peer died or
    hangs fails with an error instead of waiting for ever. SIGTERM and SIGINT sent to this launching
    process are passed on to its workers (which save a checkpoint and stop, see
    :meth:`oxnet.engine.OXnetTrainer.train`).
    """
    if torch.cuda.is_available():
        kwargs = {"timeout": timeout} if timeout is not None else {}
        return d2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, **kwargs
        )
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url=auto is only for a single machine; pass tcp://HOST:PORT")
        from detectron2.engine.launch import _find_free_port

        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    timeout = timeout if timeout is not None else datetime.timedelta(minutes=30)
    if num_gpus_per_machine == 1:  # one process per machine: this one
        return _cpu_worker(0, main_func, world_size, 1, machine_rank, dist_url, args, timeout)
    context = mp.start_processes(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        start_method="spawn",
        daemon=False,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        join=False,
    )
    with _forward_signals([p.pid for p in context.processes]):
        while not context.join():
            pass


@contextlib.contextmanager
def _forward_signals(pids):
    """Pass SIGTERM and SIGINT received by this process on to ``pids`` while active."""

    def forward(signum, frame):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout=None):
    timeout = timeout if timeout is not None else datetime.timedelta(minutes=30)
    global_rank = machine_rank * per_machine + local_rank
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(per_machine)
    else:  # detectron2 v0.6
        for i in range(world_size // per_machine):
            ranks = list(range(i * per_machine, (i + 1) * per_machine))
            group = dist.new_group(ranks, timeout=timeout)
            if i == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
        comm.synchronize()  # not after a failure: the other processes may be gone
    finally:
        dist.destroy_process_group()
