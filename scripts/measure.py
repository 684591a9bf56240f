#!/usr/bin/env python3
"""measure.py - run a command a few times and print its median wall time and
peak RSS as JSON: {"wall": seconds, "rss_kib": kib, "stdout": "...", "rc": n}.
Usage: measure.py RUNS [--preload LIB] -- CMD [ARGS...]"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def run_once(cmd, env):
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            out = os.open("/tmp/measure.%d.out" % os.getpid(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - start
    path = "/tmp/measure.%d.out" % pid
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    return wall, usage.ru_maxrss, text, os.waitstatus_to_exitcode(status)


def main():
    args = sys.argv[1:]
    runs = int(args.pop(0))
    env = dict(os.environ)
    if args and args[0] == "--preload":
        env["LD_PRELOAD"] = args[1]
        args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    results = [run_once(args, env) for _ in range(runs)]
    print(json.dumps({
        "wall": statistics.median(r[0] for r in results),
        "rss_kib": statistics.median(r[1] for r in results),
        "stdout": results[-1][2],
        "rc": max(r[3] for r in results),
    }))


if __name__ == "__main__":
    main()
