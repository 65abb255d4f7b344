"""
procs.py - the processes a probe starts: each in a session of its own,
its output appended to DIR/proc.log, pinned to a CPU when one is given
(taskset); cleanup() kills every one still running with its process
group and reaps it. Shared by the probes (clientcost, tlscost, tail,
restarts).
"""

import os
import signal
import subprocess


class Procs:
    def __init__(self, d, cpu=None):
        self.procs = []
        self.cpu = cpu                  # default CPU of spawn(), or None
        self.log = open(os.path.join(d, "proc.log"), "ab")

    def spawn(self, cmd, cpu=None, **kw):
        cpu = cpu if cpu is not None else self.cpu
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + list(cmd)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                             stderr=self.log, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
        self.log.close()
