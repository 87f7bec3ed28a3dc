"""generate.py's worker processes: each takes whole chunks of images through decoding, the network and the
PNG, so that the stages of one image never wait for each other across processes.

A worker dies with its parent, whatever kills the parent (kill -9, the out-of-memory killer): an orphan
would wait on its pipe forever, holding its memory. A worker killed by the system takes down only the
images it held: they are done again one at a time, and only an image that kills a lone worker too fails.
"""
import collections
import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import torch

KILLED = "its worker process was killed (out of memory?)"
PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when its parent dies
ORPHAN_CHECK_S = 1  # how often a worker without PR_SET_PDEATHSIG looks for its parent


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(device):
    """One worker per CPU core beside a CPU network; none beside a GPU, which one process keeps busy (each
    worker would hold its own CUDA context and copy of the network)."""
    return cpu_count() if device.type == "cpu" else 0


worker_run = None  # the run of this process when it is a worker: its parent's when forked


def start_worker(load, args, threads, parent):
    """A forked worker keeps its parent's run, whose weights it shares; a spawned one loads its own
    (load(args)). On SIGTERM or Ctrl-C it unwinds, so that the output it was writing leaves no temporary
    file, and exits quietly (the main process says what was done): a KeyboardInterrupt would print a
    traceback from a worker waiting for work. It dies with its parent (exit_with)."""
    global worker_run
    exit_with(parent)
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(1))
    torch.set_num_threads(threads)
    worker_run = worker_run or load(args)


def exit_with(parent):
    """End this worker when its parent process ends, whatever ends it. On Linux the kernel kills it at once
    (PR_SET_PDEATHSIG); elsewhere, or where that is refused, a thread sees it handed to another parent.
    Whatever the killed worker was writing stays as a temporary file that the next run removes."""
    if sys.platform == "linux" and ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
        if os.getppid() != parent:  # the parent died before the request: no signal will come
            os._exit(1)
    else:
        threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()


def exit_when_orphaned(parent):
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)


def process_in_worker(process, jobs):
    """process(jobs) in a worker. A stop signal raises SystemExit in it (start_worker), which unwinds the
    output being written; the pool would catch it and send it back as the chunk's result, then wait on a
    pipe that the stopping parent closes, and print that EOFError's traceback: so the worker ends here."""
    try:
        return process(jobs, worker_run)
    except SystemExit:
        os._exit(1)


@contextlib.contextmanager
def worker_pool(run, load, args, workers, threads):
    """`workers` processes of `threads` threads each. Whole images go to each, network included: the
    stages of one image never wait for each other across processes, and the network at 1 thread per
    core uses the cores better than at 2 threads beside busy decoders."""
    global worker_run
    # fork is fast and shares this process's run, weights included, but a forked child hangs in GNU
    # OpenMP on more than one thread once its parent has used OpenMP, and cannot use CUDA once its
    # parent has: then the workers start afresh and load their own.
    method = "fork" if threads == 1 and run.device.type == "cpu" else "spawn"
    worker_run = run
    pool = concurrent.futures.ProcessPoolExecutor(workers, multiprocessing.get_context(method), start_worker,
                                                  (load, args, threads, os.getpid()))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        worker_run = None


def map_chunks(process, chunks, run, workers, load, args):
    """process(chunk, run) -> a list of records, one per job, for each chunk, as they finish, from `workers`
    processes (from this one for 0); a spawned worker makes its own run with load(args). A worker killed by
    the system (out of memory) takes its chunk down, but no other: the jobs it held are done again one at a
    time by a lone worker, and only a job that kills that one too fails, with a record {"src", "error"}."""
    if not workers:
        yield from (process(chunk, run) for chunk in chunks)
        return
    threads, queue, suspects = max(1, cpu_count() // workers), collections.deque(chunks), []
    while queue:
        with worker_pool(run, load, args, workers, threads) as pool:
            running = {}
            while (queue or running) and not suspects:
                while queue and len(running) < workers:  # a few in flight: a broken pool loses only those
                    chunk = queue.popleft()
                    running[pool.submit(process_in_worker, process, chunk)] = chunk
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    chunk = running.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        suspects += chunk
            suspects += [job for chunk in running.values() for job in chunk]
        while suspects:
            with worker_pool(run, load, args, 1, threads) as pool:
                while suspects:
                    job = suspects.pop(0)
                    try:
                        yield pool.submit(process_in_worker, process, [job]).result()
                    except BrokenProcessPool:
                        yield [{"src": job["src"], "error": KILLED}]
                        break
