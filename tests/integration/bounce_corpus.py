#!/usr/bin/python3
"""bounce_corpus - every fixture of tests/fixtures/bounces through
"sgadmin ingest", held to its .expect file and to Sisimai.

Usage: bounce_corpus.py FIXTURES WORK CONF SGADMIN TOKEN_MAKE KEYFILE SISIMAI_PL

For each NAME.eml: its {{TOKEN purpose tenant recipient group message}}
placeholders become real tokens (token_make, the test's key); the tenant
"default" is given a processed event for every address the .expect names,
so that reports without a token can be matched to sent mail; then
"sgadmin --json ingest --recipient ENVELOPE FILE" must exit 0 and its
actions must be exactly what the .expect says (kind; per rcpt line the
action, address, bounce type, status and a piece of the reason; the
source of a complaint; the group of an unsubscribe).  Last, Sisimai's
reading of the same files (bounce_sisimai.pl): where its addresses and
classes (hard, soft, block, arf, autoreply) differ from sendguard's, the
fixture must say why in a "sisimai-differs:" line, and one that says so
while they agree fails as stale.
"""
import json
import os
import re
import subprocess
import sys
import time

fixtures, work, conf, sgadmin, token_make, keyfile, sisimai_pl = sys.argv[1:8]
PLACEHOLDER = re.compile(r"\{\{TOKEN ([^}]*)\}\}")
tokens = {}
failures = []
checks = 0


def token(spec):
    if spec not in tokens:
        parts = spec.split()
        if len(parts) != 5:
            sys.exit(f"bad placeholder {{{{TOKEN {spec}}}}}")
        tokens[spec] = subprocess.run([token_make, keyfile] + parts, check=True,
                                      capture_output=True, text=True).stdout.strip()
    return tokens[spec]


def subst(data):
    return PLACEHOLDER.sub(lambda m: token(m.group(1)), data)


def expectation(path):
    e = {"kind": None, "envelope": None, "rcpt": [], "source": None, "group": None,
         "differs": None}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        key, _, val = line.partition(":")
        val = val.strip()
        if key == "rcpt":
            f = [x.strip() for x in val.split("|")]
            if len(f) != 5:
                sys.exit(f"{path}: rcpt line needs 5 fields: {line}")
            e["rcpt"].append(f)
        elif key == "sisimai-differs":
            e["differs"] = val
        elif key in e:
            e[key] = val
    return e


def fail(name, text):
    failures.append(f"{name}: {text}")


os.makedirs(f"{work}/fx", exist_ok=True)
names = sorted(f[:-4] for f in os.listdir(fixtures) if f.endswith(".eml"))
exp = {n: expectation(f"{fixtures}/{n}.expect") for n in names}

# processed events for every address named, as the milter would have written them
now = int(time.time())
os.makedirs(f"{work}/store/events", exist_ok=True)
with open(f"{work}/store/events/{time.strftime('%Y-%m-%d', time.gmtime(now))}.jsonl",
          "a") as ev:
    for i, a in enumerate(sorted({r[0].lower() for e in exp.values() for r in e["rcpt"]})):
        ev.write(json.dumps({"timestamp": now - 3600, "event": "processed", "email": a,
                             "tenant": "default", "sg_event_id": f"seed{i}"}) + "\n")

ours = {}
for n in names:
    e = exp[n]
    with open(f"{fixtures}/{n}.eml", "rb") as f:
        raw = f.read()
    out = re.sub(PLACEHOLDER.pattern.encode(), lambda m: token(m.group(1).decode()).encode(),
                 raw)
    with open(f"{work}/fx/{n}.eml", "wb") as f:
        f.write(out)
    env = subst(e["envelope"]) if e["envelope"] else "bounces@shop.example"
    p = subprocess.run([sgadmin, "-c", conf, "--json", "ingest", "--recipient", env,
                        f"{work}/fx/{n}.eml"], capture_output=True, text=True)
    checks += 1
    if p.returncode != 0:
        fail(n, f"sgadmin ingest exited {p.returncode}: {p.stderr.strip()}")
        continue
    actions = json.loads(p.stdout)[0]["actions"]
    kinds = {a["kind"] for a in actions}
    want_kind = {"unsubscribe": "none"}.get(e["kind"], e["kind"])
    checks += 1
    if kinds != {want_kind}:
        fail(n, f"kind {sorted(kinds)}, expected {want_kind}")
    used = set()
    for r in e["rcpt"]:
        addr, act, typ, status, reason = r
        checks += 1
        if e["kind"] == "arf":
            want = "spamreport" if act in ("abuse", "fraud") else "unmatched"
        elif e["kind"] == "unsubscribe":
            want = "group_unsubscribe" if e["group"] not in (None, "0") else "unsubscribe"
        else:
            want = "deferred" if act == "delayed" else "bounce"
        hit = [i for i, a in enumerate(actions)
               if a["action"] == want and a["email"].lower() == addr.lower()]
        if not hit:
            fail(n, f"no {want} action for {addr}: {json.dumps(actions)[:400]}")
            continue
        a = actions[hit[0]]
        used.add(hit[0])
        if want == "bounce" and a.get("bounce_type") != typ:
            fail(n, f"{addr}: bounce_type {a.get('bounce_type')}, expected {typ}")
        if want in ("bounce", "deferred") and status != "-" and a.get("status") != status:
            fail(n, f"{addr}: status {a.get('status')}, expected {status}")
        if want in ("bounce", "deferred") and reason != "-" and reason not in a.get("reason", ""):
            fail(n, f"{addr}: reason {a.get('reason')!r} lacks {reason!r}")
        if want == "spamreport" and e["source"] and a.get("source") != e["source"]:
            fail(n, f"{addr}: source {a.get('source')}, expected {e['source']}")
        if want == "unmatched" and e["kind"] == "arf" and act not in a.get("reason", ""):
            fail(n, f"{addr}: unmatched for {a.get('reason')!r}, expected type {act}")
        if want.endswith("unsubscribe") and str(a.get("asm_group_id")) != (e["group"] or "0"):
            fail(n, f"{addr}: group {a.get('asm_group_id')}, expected {e['group']}")
    for i, a in enumerate(actions):
        checks += 1
        if i not in used and a["action"] != "unmatched":
            fail(n, f"unexpected {a['action']} action for {a['email']}")
    # sendguard's reading in Sisimai's terms
    s = set()
    for a in actions:
        if a["action"] == "bounce":
            s.add((a["email"].lower(), a["bounce_type"]))
        elif a["action"] == "deferred":
            s.add((a["email"].lower(), "soft"))
        elif a["action"] == "spamreport" or (a["kind"] == "arf" and a["email"]):
            s.add((a["email"].lower(), "arf"))
        elif a["kind"] == "autoreply":
            s.add(("", "autoreply"))
    ours[n] = s

# Sisimai's reading
p = subprocess.run(["perl", sisimai_pl] + [f"{work}/fx/{n}.eml" for n in names],
                   capture_output=True, text=True)
if p.returncode != 0:
    sys.exit(f"bounce_sisimai.pl exited {p.returncode}: {p.stderr}")
theirs = {n: set() for n in names}
for line in p.stdout.splitlines():
    f = line.split("\t")
    n = os.path.basename(f[0])[:-4]
    if f[3] in ("none", "delivered"):
        continue
    if f[3] == "error":
        fail(n, "sisimai could not read it")
    theirs[n].add(("" if f[3] == "autoreply" else f[1].lower(), f[3]))
for n in names:
    checks += 1
    same = ours[n] == theirs[n]
    if not same and not exp[n]["differs"]:
        fail(n, f"sisimai reads {sorted(theirs[n])}, sendguard {sorted(ours[n])}, "
                "and the fixture says nothing of it")
    elif same and exp[n]["differs"]:
        fail(n, "it has a sisimai-differs line, but sisimai agrees")

for f in failures:
    print("FAIL", f)
agree = sum(1 for n in names if ours[n] == theirs[n])
print(f"bounce_corpus: {len(names)} fixtures, {checks} checks, "
      f"{agree} read as sisimai does, {len(names) - agree} differ with a reason, "
      f"{len(failures)} failures")
sys.exit(1 if failures else 0)
