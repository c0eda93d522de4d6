#!/usr/bin/python3
"""relay_timer - the timing half of run-relay-bench.sh.

accept N MSG OUT  (commands in the environment: ACCEPT_A_NAME, ACCEPT_A_CMD,
                   ACCEPT_B_NAME, ACCEPT_B_CMD, shell words without quoting)
    Runs each command N times with MSG on standard input, interleaved
    (A B, B A, A B, ...), after WARMUP (env, default 5) untimed runs of each.
    Every run is spawned the same way (subprocess.run, stdin the open file,
    stdout and stderr to pipes/devnull); the time is from just before the
    spawn to the child's exit, in nanoseconds (time.perf_counter_ns).  Writes
    "NAME NS" per run to OUT; prints "NAME median_ms=.. p90_ms=.. runs=.."
    per command.  Any non-zero exit status is fatal.

deliver SINK_OUT N TIMEOUT QUEUE_DIR[,QUEUE_DIR...] -- CMD...
    Runs CMD (which starts or performs the delivery), then waits until the
    smtp-sink counters in SINK_OUT show N messages received and no file is
    left under the QUEUE_DIRs (the queue has let go of every message).
    (N counts from what the sink had received when CMD started.)
    Prints "seconds=S msgs=M".

inject PORT N MSG SESSIONS
    Sends MSG N times to the SMTP server on 127.0.0.1:PORT (from
    s@example.com to rcpt@example.org) over SESSIONS parallel sessions, one
    message after another in each.  Not timed: it fills a queue.
"""
import os
import shlex
import smtplib
import threading
import subprocess
import sys
import time


def sink_count(path):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 200))
            tail = f.read().decode('ascii', 'replace')
    except OSError:
        return 0
    n = 0
    for rec in tail.replace('\n', '\r').split('\r'):
        i = rec.find('mesg=')
        if i >= 0:
            digits = ''
            for c in rec[i + 5:]:
                if not c.isdigit():
                    break
                digits += c
            if digits:
                n = int(digits)
    return n


def queue_files(dirs):
    for d in dirs:
        for _root, _dirs, files in os.walk(d):
            if files:
                return True
    return False


def pct(sorted_ns, p):
    # nearest-rank percentile
    k = max(1, -(-len(sorted_ns) * p // 100))
    return sorted_ns[int(k) - 1]


def accept(argv):
    n, msg, out = int(argv[0]), argv[1], argv[2]
    warm = int(os.environ.get('WARMUP', '5'))
    cmds = [(os.environ['ACCEPT_A_NAME'], shlex.split(os.environ['ACCEPT_A_CMD'])),
            (os.environ['ACCEPT_B_NAME'], shlex.split(os.environ['ACCEPT_B_CMD']))]
    times = {name: [] for name, _ in cmds}

    def run(name, cmd):
        with open(msg, 'rb') as f:
            t0 = time.perf_counter_ns()
            r = subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            t1 = time.perf_counter_ns()
        if r.returncode != 0:
            sys.exit('relay_timer: %s exited %d: %s' %
                     (' '.join(cmd), r.returncode, r.stderr.decode(errors='replace').strip()))
        return t1 - t0

    for _ in range(warm):
        for name, cmd in cmds:
            run(name, cmd)
    with open(out, 'w') as f:
        for i in range(n):
            order = cmds if i % 2 == 0 else cmds[::-1]
            for name, cmd in order:
                ns = run(name, cmd)
                times[name].append(ns)
                f.write('%s %d\n' % (name, ns))
    for name, _ in cmds:
        s = sorted(times[name])
        med = s[(len(s) - 1) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
        print('%s median_ms=%.3f p90_ms=%.3f min_ms=%.3f max_ms=%.3f runs=%d' %
              (name, med / 1e6, pct(s, 90) / 1e6, s[0] / 1e6, s[-1] / 1e6, len(s)))


def deliver(argv):
    sink_out, n, timeout, qdirs = argv[0], int(argv[1]), float(argv[2]), argv[3].split(',')
    assert argv[4] == '--'
    cmd = argv[5:]
    start_count = sink_count(sink_out)
    t0 = time.perf_counter_ns()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit('relay_timer: %s exited %d: %s' %
                 (' '.join(cmd), r.returncode, r.stderr.decode(errors='replace').strip()))
    deadline = time.monotonic() + timeout
    want = start_count + n
    while True:
        got = sink_count(sink_out)
        if got >= want and not queue_files(qdirs):
            break
        if time.monotonic() > deadline:
            sys.exit('relay_timer: after %.0f s the sink has %d of %d messages%s' %
                     (timeout, got - start_count, n,
                      ', and the queue is not empty' if got >= want else ''))
        time.sleep(0.005 if got >= want else 0.01)
    t1 = time.perf_counter_ns()
    print('seconds=%.3f msgs=%d' % ((t1 - t0) / 1e9, got - start_count))


def inject(argv):
    port, n, msg, sessions = int(argv[0]), int(argv[1]), argv[2], int(argv[3])
    text = open(msg).read()
    errors = []

    def session(count):
        try:
            with smtplib.SMTP('127.0.0.1', port, timeout=120) as s:
                for _ in range(count):
                    s.sendmail('s@example.com', ['rcpt@example.org'], text)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    per = [n // sessions + (1 if i < n % sessions else 0) for i in range(sessions)]
    threads = [threading.Thread(target=session, args=(c,)) for c in per if c]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit('relay_timer: inject: ' + '; '.join(errors))


if __name__ == '__main__':
    cmds = {'accept': accept, 'deliver': deliver, 'inject': inject}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])
