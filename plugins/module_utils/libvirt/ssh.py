# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Waiting for guests: a TCP probe of their SSH port, and running such waits in parallel."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures


def port_open(host, port, timeout):
    """True when a TCP connection to host:port succeeds within timeout seconds."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.timeout):
        return False
    sock.close()
    return True


def wait_for_ssh(host, port=22, timeout=300, probe=None, sleep=time.sleep, clock=time.monotonic, interval=2.0):
    """Poll host:port until it answers or timeout passes; True when it answered."""
    probe = probe or port_open
    deadline = clock() + timeout
    while True:
        remaining = deadline - clock()
        if probe(host, port, max(0.1, min(5.0, remaining))):
            return True
        if clock() + interval >= deadline:
            return False
        sleep(interval)


def in_parallel(fn, items, timeout=None, on_wait=None):
    """fn(*args) for each (name, args) of items on up to 8 threads; yields (name, result) as each one
    ends (name order within one batch). on_wait(names still running) after each wait of at most
    timeout seconds that left some running."""
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = dict((pool.submit(fn, *args), name) for name, args in items)
        pending = set(futures)
        while pending:
            done, pending = wait_futures(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=futures.get):
                yield futures[fut], fut.result()
            if pending and on_wait is not None:
                on_wait(sorted(futures[f] for f in pending))
