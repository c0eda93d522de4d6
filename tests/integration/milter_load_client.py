#!/usr/bin/python3
"""milter_load_client - load for tests/integration/milter_load.sh.

  send:   SMTP clients in parallel (and some messages through Postfix's own
          sendmail), one JSON line per message in --out once it is finished:
          accepted (with the queue ids and times) or given up.
          --retry: a 4xx reply or a connection error is retried on a new
          connection, for the recipients not yet accepted, until --deadline
          seconds have passed; without it any reply but 250 is an error.
  check-load / check-stream:
          compare the messages sent with what smtp-sink stored (its files
          carry one X-Rcpt-Args line per envelope recipient), what is still
          queued (Postfix's queue, sgrelay's spool) and the event log; print
          the counts, and every violation on standard error (exit 1).
  kill-on-handoff:
          SIGKILL the milter the instant an entry appears in the spool's
          queue/ (renamed or linked in; inotify, at real-time priority when
          allowed): its hand-off is durable, its answer to Postfix not yet
          given.

The recipients of message i are a function of the plan and i (recipients()),
so the checker knows what each message should have reached.
"""
import argparse
import glob
import json
import os
import re
import smtplib
import subprocess
import sys
import threading
import time

SENDER = "news@shop.example"

# The lists milter_load.sh puts these addresses on.
BOUNCED = {"gone@example.org"}           # bounces add
UNSUBSCRIBED = {"quit@example.org"}      # unsubscribes add
GROUP_SUPPRESSED = {"left@example.org"}  # group-suppressions add GID


def recipients(plan, i):
    """(recipients, with_group) of message i of the plan"""
    if plan == "load":
        r = ["r%d@example.org" % (i % 7), "s%d@example.net" % (i % 5)]
        if i % 3 == 0:
            r.append("t%d@example.com" % (i % 4))
        if i % 3 == 1:
            r.append("gone@example.org")
        if i % 4 == 1:
            r.append("quit@example.org")
        if i % 5 == 2:
            r.append("left@example.org")
        return r, i % 2 == 0
    if plan == "stream":
        # target@ gets a bounce entry, gtarget@ a group suppression, during
        # the run; other*@ never; every other message has the group
        return (["target@example.org", "gtarget@example.org", "other%d@example.org" % (i % 3)],
                i % 2 == 0)
    raise SystemExit("unknown plan %s" % plan)


def build(prefix, i, group, runid):
    subj = "%s-%05d" % (prefix, i)
    hdrs = [
        "From: Shop <%s>" % SENDER,
        "To: undisclosed-recipients:;",
        "Subject: %s" % subj,
        "Message-ID: <%s.%s@load.test>" % (subj, runid),
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
    ]
    if group is not None:
        hdrs.append('X-SMTPAPI: {"asm_group_id": %d, "category": ["load"]}' % group)
    body = ["body of %s" % subj, "line two of %s" % subj]
    return subj, "\r\n".join(hdrs) + "\r\n\r\n" + "\r\n".join(body) + "\r\n"


class Sender:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.out = open(a.out, "a")
        self.next = a.first
        self.start = time.time()
        self.runid = "%d.%d" % (os.getpid(), int(self.start))

    def take(self):
        with self.lock:
            i = self.next
            if self.a.count is not None and i >= self.a.first + self.a.count:
                return None
            if self.a.duration is not None and time.time() - self.start >= self.a.duration:
                return None
            self.next += 1
            return i

    def emit(self, rec):
        with self.lock:
            self.out.write(json.dumps(rec) + "\n")
            self.out.flush()

    def via_sendmail(self, i):
        e = self.a.sendmail_every
        return bool(self.a.sendmail) and e > 0 and i % e == e - 1

    def run_one(self, i):
        rcpts, grouped = recipients(self.a.plan, i)
        group = self.a.group if grouped else None
        subj, msg = build(self.a.prefix, i, group, self.runid)
        rec = {"i": i, "subject": subj, "rcpts": rcpts, "group": group,
               "via": "sendmail" if self.via_sendmail(i) else "smtp",
               "t_start": time.time(), "attempts": 0, "tempfails": 0,
               "conn_errors": 0, "accepted": [], "queue_ids": [], "t_end": None,
               "errors": [], "replies": []}
        if rec["via"] == "sendmail":
            self.sendmail(rec, msg)
        else:
            self.smtp(rec, msg)
        rec["ok"] = not rec["errors"] and sorted(rec["accepted"]) == sorted(rcpts)
        self.emit(rec)

    def sendmail(self, rec, msg):
        rec["attempts"] = 1
        cmd = [self.a.sendmail, "-C", self.a.sendmail_conf, "-i", "-f", SENDER, "--"] + rec["rcpts"]
        p = subprocess.run(cmd, input=msg.replace("\r\n", "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        rec["t_end"] = time.time()
        if p.returncode != 0:
            rec["errors"].append("sendmail exited %d: %s" % (p.returncode, p.stdout.decode(errors="replace")))
        else:
            rec["accepted"] = list(rec["rcpts"])

    def smtp(self, rec, msg):
        a = self.a
        pending = list(rec["rcpts"])
        deadline = rec["t_start"] + a.deadline
        while pending:
            rec["attempts"] += 1
            outcome, detail = self.transaction(rec, pending, msg)
            if outcome == "done":
                break
            if outcome == "error" or not a.retry:
                rec["errors"].append(detail)
                break
            if outcome == "temp":
                rec["tempfails"] += 1
            else:
                rec["conn_errors"] += 1
            rec["replies"].append(detail)
            if time.time() >= deadline:
                rec["errors"].append("still not accepted after %d s: %s" % (a.deadline, detail))
                break
            time.sleep(min(0.2 * rec["attempts"], 1.0))
        # pending recipients got a permanent refusal, or time ran out
        pending[:] = [r for r in pending if r not in rec["accepted"]]

    def transaction(self, rec, pending, msg):
        """one SMTP session for the pending recipients: ("done"|"temp"|"conn"|"error", text)"""
        s = None
        stage = "connect"
        try:
            s = smtplib.SMTP("127.0.0.1", self.a.port, local_hostname="load.test", timeout=30)
            stage = "mail"
            code, text = s.mail(SENDER)
            if code != 250:
                return self.answer(code, text, "MAIL")
            stage = "rcpt"
            ok = []
            temp = []
            for r in pending:
                code, text = s.rcpt(r)
                if code in (250, 251):
                    ok.append(r)
                elif 400 <= code < 500:
                    temp.append("%s: %d %s" % (r, code, text.decode(errors="replace")))
                else:
                    return ("error", "RCPT %s: %d %s" % (r, code, text.decode(errors="replace")))
            if not ok:
                return ("temp", "RCPT: " + "; ".join(temp))
            stage = "data"
            try:
                code, text = s.data(msg)
            except smtplib.SMTPDataError as e:  # DATA itself refused (not 354)
                return self.answer(e.smtp_code, e.smtp_error, "DATA")
            t_end = time.time()
            if code != 250:
                return self.answer(code, text, "end of DATA")
            txt = text.decode(errors="replace")
            m = re.search(r"queued as (\S+)", txt)
            rec["queue_ids"].append(m.group(1) if m else "?")
            rec["accepted"].extend(ok)
            rec["t_end"] = t_end
            for r in ok:
                pending.remove(r)
            stage = "quit"
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass
            s = None
            if temp:
                if not self.a.retry:
                    return ("error", "RCPT: " + "; ".join(temp))
                return ("temp", "RCPT: " + "; ".join(temp))
            return ("done", "250 " + txt)
        except (smtplib.SMTPException, OSError) as e:
            if stage == "data":
                # the end of the data was perhaps received: the outcome is
                # unknown, and a retry may deliver twice (counted apart)
                rec.setdefault("ambiguous", 0)
                rec["ambiguous"] += 1
            return ("conn", "%s: %s: %s" % (stage, type(e).__name__, e))
        finally:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    @staticmethod
    def answer(code, text, what):
        t = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        if code is not None and 400 <= code < 500:
            return ("temp", "%s: %d %s" % (what, code, t))
        if code == -1:
            return ("conn", "%s: %s" % (what, t))
        return ("error", "%s: %s %s" % (what, code, t))

    def run(self):
        def worker():
            while True:
                i = self.take()
                if i is None:
                    return
                try:
                    self.run_one(i)
                except Exception as e:  # noqa: BLE001 - reported, never lost
                    self.emit({"i": i, "subject": "%s-%05d" % (self.a.prefix, i),
                               "rcpts": recipients(self.a.plan, i)[0], "ok": False,
                               "accepted": [], "errors": ["client: %r" % e], "attempts": 0,
                               "tempfails": 0, "conn_errors": 0, "via": "?", "t_end": None,
                               "group": None, "queue_ids": []})
                if self.a.pause:
                    time.sleep(self.a.pause)

        ts = [threading.Thread(target=worker) for _ in range(self.a.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.out.close()


# --- what arrived, what is queued ---

def sink_deliveries(sinkdir, prefix):
    """{(subject, rcpt): [file, ...]} for the subjects starting with prefix"""
    got = {}
    for f in glob.glob(os.path.join(sinkdir, "*.*")):
        base = os.path.basename(f)
        if base.startswith("sink."):
            continue
        rcpts = []
        subj = None
        with open(f, "rb") as fh:
            for line in fh:
                line = line.decode("utf-8", "replace").rstrip("\r\n")
                m = re.match(r"X-Rcpt-Args: <([^>]*)>", line)
                if m:
                    rcpts.append(m.group(1).lower())
                elif subj is None and line.startswith("Subject: "):
                    subj = line[9:].strip()
                    break
        if subj is None or not subj.startswith(prefix + "-"):
            continue
        for r in rcpts:
            got.setdefault((subj, r), []).append(base)
    return got


def postfix_queued(pfconf, prefix):
    """{(subject, rcpt): queue name} of the messages still in Postfix's queue"""
    out = {}
    if not pfconf:
        return out
    p = subprocess.run(["/usr/sbin/postqueue", "-c", pfconf, "-j"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    for line in p.stdout.decode(errors="replace").splitlines():
        try:
            q = json.loads(line)
        except ValueError:
            continue
        c = subprocess.run(["/usr/sbin/postcat", "-c", pfconf, "-hq", q["queue_id"]],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        m = re.search(r"^Subject: (\S+)", c.stdout.decode(errors="replace"), re.M)
        if not m or not m.group(1).startswith(prefix + "-"):
            continue
        for r in q.get("recipients", []):
            out[(m.group(1), r["address"].lower())] = "postfix:" + q.get("queue_name", "?")
    return out


def spool_queued(spooldir, prefix):
    """{(subject, rcpt): "sgrelay:ID"} of the pending recipients in sgrelay's spool"""
    out = {}
    if not spooldir:
        return out
    for f in glob.glob(os.path.join(spooldir, "queue", "*")):
        try:
            data = open(f, "rb").read().decode("utf-8", "replace")
        except OSError:
            continue
        env, _, msg = data.partition("\n\n")
        m = re.search(r"^Subject: (\S+)", msg, re.M)
        if not m or not m.group(1).startswith(prefix + "-"):
            continue
        for line in env.splitlines():
            p = line.split(" ")
            if p[0] == "R" and len(p) >= 5 and p[1] == "-":
                out[(m.group(1), p[4].lower())] = "sgrelay:" + os.path.basename(f)
    return out


def read_sent(paths):
    out = []
    for path in paths:
        with open(path) as fh:
            out += [json.loads(line) for line in fh if line.strip()]
    return out


def events(a, etype, addr=None):
    cmd = [a.sgadmin, "-c", a.conf, "--json", "events", "list", "--type", etype,
           "--limit", "1000000"]
    if addr:
        cmd += ["--email", addr]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise SystemExit("sgadmin events list failed (%d): %s" % (p.returncode, p.stderr.decode()))
    return json.loads(p.stdout)


def suppressed(rcpt, grouped):
    return rcpt in BOUNCED or rcpt in UNSUBSCRIBED or (grouped and rcpt in GROUP_SUPPRESSED)


class Problems:
    def __init__(self):
        self.n = 0

    def __call__(self, text):
        self.n += 1
        if self.n <= 40:
            print("  problem: " + text, file=sys.stderr)
        elif self.n == 41:
            print("  (more problems not shown)", file=sys.stderr)


def check_load(a):
    sent = read_sent(a.sent)
    bad = Problems()
    got = sink_deliveries(a.sink, a.prefix)
    queued = postfix_queued(a.pfconf, a.prefix)
    queued.update(spool_queued(a.spool, a.prefix))
    seen = set()
    n_deliver = n_delivered = n_queued = n_dups = 0
    for rec in sent:
        if not rec.get("ok"):
            bad("%s was not accepted: %s" % (rec["subject"], rec.get("errors")))
        grouped = rec.get("group") is not None
        for r in rec["rcpts"]:
            key = (rec["subject"], r)
            seen.add(key)
            files = got.get(key, [])
            if suppressed(r, grouped):
                if files:
                    bad("%s reached suppressed %s (%s)" % (rec["subject"], r, " ".join(files)))
                if key in queued:
                    bad("%s for suppressed %s is queued (%s)" % (rec["subject"], r, queued[key]))
                continue
            n_deliver += 1
            if len(files) > 1:
                n_dups += 1
                bad("%s reached %s %d times (%s)" % (rec["subject"], r, len(files), " ".join(files)))
            if files and key in queued:
                bad("%s for %s delivered and still queued (%s)" % (rec["subject"], r, queued[key]))
            if files:
                n_delivered += 1
            elif key in queued:
                n_queued += 1
            else:
                bad("%s for %s LOST: not delivered, not queued" % (rec["subject"], r))
    for key, files in sorted(got.items()):
        if key not in seen:
            bad("unexpected delivery %s to %s (%s)" % (key[0], key[1], " ".join(files)))
    n = len(sent)
    smtp = [r for r in sent if r["via"] == "smtp"]
    retried = [r for r in smtp if r["attempts"] > 1]
    print("sent=%d (smtp=%d sendmail=%d) accepted=%d" % (
        n, len(smtp), n - len(smtp), sum(1 for r in sent if r.get("ok"))))
    print("tempfailed_and_retried=%d (tempfail replies=%d, connection errors=%d, "
          "ambiguous=%d, most attempts=%d)" % (
              len(retried), sum(r["tempfails"] for r in smtp), sum(r["conn_errors"] for r in smtp),
              sum(r.get("ambiguous", 0) for r in smtp), max([r["attempts"] for r in smtp] or [0])))
    print("recipient_deliveries_expected=%d delivered=%d queued=%d duplicated=%d "
          "suppressed_pairs=%d" % (
              n_deliver, n_delivered, n_queued, n_dups,
              sum(1 for rec in sent for r in rec["rcpts"] if suppressed(r, rec.get("group") is not None))))
    where = {}
    for rec in sent:
        for r in rec["rcpts"]:
            key = (rec["subject"], r)
            if key in queued and not got.get(key) and not suppressed(r, rec.get("group") is not None):
                q = queued[key].rsplit(":", 1)[0] if queued[key].startswith("sgrelay") else queued[key]
                where[q] = where.get(q, 0) + 1
    if where:
        print("queued_in=%s" % " ".join("%s:%d" % kv for kv in sorted(where.items())))
    if a.expect_sent is not None and n != a.expect_sent:
        bad("%d messages recorded, %d expected" % (n, a.expect_sent))
    if a.min_retried and len(retried) < a.min_retried:
        bad("only %d messages were retried: the milter was not down during the run" % len(retried))
    if a.max_queued is not None and n_queued > a.max_queued:
        bad("%d recipient deliveries still queued, at most %d allowed" % (n_queued, a.max_queued))
    return 1 if bad.n else 0


def check_stream(a):
    """B: the suppressions added during the stream.

    The milter's decisions are its dropped events, named by Postfix's queue
    id (the client has it from the 250 reply).  A recipient the milter
    handed to sgrelay's spool (a message with a group, not its first kept
    recipient) is decided again by sgrelay before each attempt (sgrelay(8):
    one who unsubscribed while the message waited is not sent it), with an
    event named by the spool id: such a copy of a message that ended before
    the suppression may be dropped there instead of delivered.
    """
    sent = read_sent(a.sent)
    bad = Problems()
    got = sink_deliveries(a.sink, a.prefix)
    queued = postfix_queued(a.pfconf, a.prefix)
    queued.update(spool_queued(a.spool, a.prefix))
    qids = {q for rec in sent for q in rec.get("queue_ids", [])}
    milter_drops = {}
    relay_drops = {}
    for addr in ("target@example.org", "gtarget@example.org"):
        for e in events(a, "dropped", addr):
            if e.get("sg_message_id") in qids:
                milter_drops.setdefault((e["sg_message_id"], e["email"].lower()), []).append(e.get("reason"))
            else:
                relay_drops.setdefault(e["email"].lower(), []).append(e.get("reason"))
    # (reason, address, applies to the message?, sgadmin started, returned)
    rules = [("bounce", "target@example.org", lambda rec: True, a.bounce_start, a.bounce_end),
             ("group_unsubscribe", "gtarget@example.org", lambda rec: rec.get("group") is not None,
              a.group_start, a.group_end)]
    stats = {}
    for rec in sent:
        if not rec.get("ok"):
            bad("%s: the client saw %s" % (rec["subject"], rec.get("errors") or rec.get("replies")))
            continue
        if rec["attempts"] != 1 or rec["tempfails"] or rec["conn_errors"]:
            bad("%s needed %d attempts: %s" % (rec["subject"], rec["attempts"], rec.get("replies")))
        t = rec["t_end"]
        qid = rec["queue_ids"][-1]
        kept = [r for r in rec["rcpts"] if (qid, r) not in milter_drops]
        for r in rec["rcpts"]:
            key = (rec["subject"], r)
            files = got.get(key, [])
            spooled = rec.get("group") is not None and len(kept) > 1 and r in kept[1:]
            if len(files) > 1:
                bad("%s reached %s %d times (%s)" % (rec["subject"], r, len(files), " ".join(files)))
            if key in queued:
                bad("%s for %s still queued (%s)" % (rec["subject"], r, queued[key]))
            rule = [x for x in rules if x[1] == r and x[2](rec)]
            if not rule:
                if (qid, r) in milter_drops:
                    bad("%s: the milter dropped %s (%s), which no list names for it" % (
                        rec["subject"], r, milter_drops[(qid, r)]))
                if not files:
                    bad("%s never reached %s" % (rec["subject"], r))
                continue
            reason, addr, _, t0, t1 = rule[0]
            st = stats.setdefault(addr, {"before": 0, "before_relay_dropped": 0, "window": 0,
                                         "window_delivered": 0, "after": 0, "last_delivery": None,
                                         "relay_dropped": 0})
            if spooled and not files:
                st["relay_dropped"] += 1
            if t < t0:
                # decided before sgadmin even started: kept by the milter
                st["before"] += 1
                if (qid, addr) in milter_drops:
                    bad("%s ended %.3f s before sgadmin started, and the milter dropped %s (%s)" % (
                        rec["subject"], t0 - t, addr, milter_drops[(qid, addr)]))
                elif not files and not spooled:
                    bad("%s (ended %.3f s before sgadmin started) did not reach %s" % (
                        rec["subject"], t0 - t, r))
                elif not files:
                    st["before_relay_dropped"] += 1
            elif t > t1 + a.grace:
                st["after"] += 1
                if files:
                    bad("%s ended %.3f s after sgadmin returned and still reached %s (%s)" % (
                        rec["subject"], t - t1, r, " ".join(files)))
                if reason not in milter_drops.get((qid, addr), []):
                    bad("%s (queue id %s, ended %.3f s after sgadmin returned): the milter has no "
                        "dropped event with reason %s for %s (its events: %s)" % (
                            rec["subject"], qid, t - t1, reason, addr, milter_drops.get((qid, addr))))
            else:
                st["window"] += 1
                if files:
                    st["window_delivered"] += 1
            if files and t >= t0:
                if st["last_delivery"] is None or t - t1 > st["last_delivery"]:
                    st["last_delivery"] = t - t1
    for (reason, addr, _, t0, t1) in rules:
        st = stats.get(addr, {})
        ld = st.get("last_delivery")
        print("%s %s: sgadmin took %.3f s; messages to it ended before sgadmin started: %d "
              "(%d spooled copies dropped later by sgrelay), within %.1f s after it returned: %d "
              "(%d delivered), later: %d (all dropped by the milter); last delivery: its message "
              "ended %s" % (
                  reason, addr, t1 - t0, st.get("before", 0), st.get("before_relay_dropped", 0),
                  a.grace, st.get("window", 0), st.get("window_delivered", 0), st.get("after", 0),
                  "%+.3f s from sgadmin's return" % ld if ld is not None
                  else "before sgadmin started"))
        if st.get("after", 0) < 1:
            bad("no message to %s ended more than %.1f s after the %s suppression: nothing proven" % (
                addr, a.grace, reason))
        if st.get("before", 0) - st.get("before_relay_dropped", 0) < 1:
            bad("no message to %s was delivered before the %s suppression" % (addr, reason))
        rd = relay_drops.get(addr, [])
        if len(rd) != st.get("relay_dropped", 0) or any(x != reason for x in rd):
            bad("sgrelay dropped %s %d times (%s), but %d spooled copies to it did not arrive" % (
                addr, len(rd), rd, st.get("relay_dropped", 0)))
    print("stream: %d messages, %d accepted at the first try" % (
        len(sent), sum(1 for r in sent if r.get("ok") and r["attempts"] == 1)))
    return 1 if bad.n else 0


def kill_on_handoff(a):
    """SIGKILL a.pid the moment an entry appears in a.spool/queue (the
    milter's hand-off is durable, its answer to the MTA not yet given)"""
    import ctypes
    import signal
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        raise SystemExit("inotify_init1: errno %d" % ctypes.get_errno())
    # the milter links its once-only entries in (IN_CREATE); others are renamed
    IN_MOVED_TO, IN_CREATE = 0x80, 0x100
    if libc.inotify_add_watch(fd, os.path.join(a.spool, "queue").encode(),
                              IN_MOVED_TO | IN_CREATE) < 0:
        raise SystemExit("inotify_add_watch: errno %d" % ctypes.get_errno())
    # real-time priority, so that the kill lands while the milter is still
    # between its hand-off and its answer (it fsyncs the queue directory
    # then), even on a busy machine; as root only
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        rt = True
    except (OSError, AttributeError):
        rt = False
    open(a.ready, "w").close()
    import select
    r, _, _ = select.select([fd], [], [], a.timeout)
    if not r:
        print("no hand-off in %.0f s" % a.timeout)
        return 2
    os.kill(a.pid, signal.SIGKILL)
    data = os.read(fd, 4096)
    _, _, _, n = struct.unpack_from("iIII", data)
    print(data[16:16 + n].rstrip(b"\0").decode() + ("" if rt else " (without real-time priority)"))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--plan", default="load")
    s.add_argument("--prefix", required=True)
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int)
    s.add_argument("--duration", type=float)
    s.add_argument("--threads", type=int, default=4)
    s.add_argument("--group", type=int, required=True)
    s.add_argument("--retry", action="store_true")
    s.add_argument("--deadline", type=float, default=40)
    s.add_argument("--pause", type=float, default=0)
    s.add_argument("--sendmail", default="")
    s.add_argument("--sendmail-conf", default="")
    s.add_argument("--sendmail-every", type=int, default=0)
    for name in ("check-load", "check-stream"):
        c = sub.add_parser(name)
        c.add_argument("--sent", required=True, action="append")
        c.add_argument("--prefix", required=True)
        c.add_argument("--sink", required=True)
        c.add_argument("--pfconf", default="")
        c.add_argument("--spool", default="")
        c.add_argument("--sgadmin", default="")
        c.add_argument("--conf", default="")
        c.add_argument("--expect-sent", type=int)
        c.add_argument("--min-retried", type=int, default=0)
        c.add_argument("--max-queued", type=int)
        c.add_argument("--grace", type=float, default=1.0)
        for t in ("bounce-start", "bounce-end", "group-start", "group-end"):
            c.add_argument("--" + t, type=float, default=0)
    k = sub.add_parser("kill-on-handoff")
    k.add_argument("--spool", required=True)
    k.add_argument("--pid", type=int, required=True)
    k.add_argument("--ready", required=True)
    k.add_argument("--timeout", type=float, default=20)
    a = ap.parse_args()
    if a.cmd == "kill-on-handoff":
        return kill_on_handoff(a)
    if a.cmd == "send":
        if (a.count is None) == (a.duration is None):
            ap.error("send needs one of --count and --duration")
        Sender(a).run()
        return 0
    if a.cmd == "check-load":
        return check_load(a)
    return check_stream(a)


if __name__ == "__main__":
    sys.exit(main())
