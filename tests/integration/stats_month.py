#!/usr/bin/python3
"""stats_month - a generated month of events with known counts, held to
"sgadmin stats" metric by metric.

Usage: stats_month.py gen EVENTS.jsonl EXPECT.json SEED
       stats_month.py check EXPECT.json STATS.json TENANT AGG [CATEGORY...]

gen writes November 2026 of events for tenants acme and beta in time order
(processed for every recipient, drops of each reason, delivered, deferred,
bounces and blocks, spam reports, unsubscribes, and opens and clicks on
later days, some repeated) and the counts they make: per tenant ("*" for
all tenants), day, category ("" for all mail) and metric, a unique open or
click being a (message, recipient) pair's first.  check sums those counts
into the periods of AGG (day, week from Monday, month) and compares them
with sgadmin's JSON, every metric of every period; it prints how many
figures it compared and exits 1 at the first difference.
"""
import datetime
import json
import random
import sys

METRICS = ["requests", "processed", "delivered", "deferred", "bounces", "blocks",
           "bounce_drops", "spam_reports", "spam_report_drops", "unsubscribes",
           "unsubscribe_drops", "opens", "unique_opens", "clicks", "unique_clicks",
           "invalid_emails"]
DAY0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
CATS = ["news", "promo", "winter"]


def day_of(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")


def metrics_of(ev):
    t = ev["event"]
    if t == "processed":
        return {"requests": 1, "processed": 1}
    if t == "dropped":
        r = ev["reason"]
        m = {"bounce": "bounce_drops", "spam_report": "spam_report_drops",
             "global_unsubscribe": "unsubscribe_drops",
             "group_unsubscribe": "unsubscribe_drops"}.get(r, "invalid_emails")
        return {"processed": -1, m: 1}
    if t in ("delivered", "deferred"):
        return {t: 1}
    if t == "bounce":
        return {"blocks" if ev.get("type") == "blocked" else "bounces": 1}
    if t == "spamreport":
        return {"spam_reports": 1}
    if t in ("unsubscribe", "group_unsubscribe"):
        return {"unsubscribes": 1}
    if t == "open":
        return {"opens": 1}
    if t == "click":
        return {"clicks": 1}
    return {}


def gen(path, expect_path, seed):
    rnd = random.Random(seed)
    events = []
    for day in range(30):
        for tenant in ("acme", "beta"):
            for k in range(rnd.randint(20, 40)):
                ts = int((DAY0 + datetime.timedelta(days=day)).timestamp()) + rnd.randint(0, 80000)
                msg = f"{tenant}-{day}-{k}"
                cats = rnd.sample(CATS, rnd.choice([0, 1, 1, 2]))
                base = {"tenant": tenant, "sg_message_id": msg}
                if cats:
                    base["category"] = cats
                for r in range(rnd.randint(1, 3)):
                    email = f"r{rnd.randint(0, 200)}.{k}@example{r}.org"
                    ev = dict(base, event="processed", email=email, timestamp=ts)
                    events.append(ev)
                    x = rnd.random()
                    if x < 0.10:
                        events.append(dict(base, event="dropped", email=email, timestamp=ts,
                                           reason=rnd.choice(["bounce", "spam_report",
                                                              "global_unsubscribe",
                                                              "group_unsubscribe", "invalid"])))
                        continue
                    if x < 0.15:
                        events.append(dict(base, event="deferred", email=email, timestamp=ts + 60))
                    if x < 0.20:
                        events.append(dict(base, event="bounce", email=email, timestamp=ts + 120,
                                           type=rnd.choice(["bounce", "blocked"])))
                        continue
                    events.append(dict(base, event="delivered", email=email, timestamp=ts + 5))
                    # opens and clicks on this or later days, some twice
                    for kind, p in (("open", 0.45), ("click", 0.15)):
                        if rnd.random() < p:
                            for _ in range(rnd.choice([1, 1, 2, 3])):
                                t2 = ts + rnd.randint(10, 6 * 86400)
                                if day_of(t2) > "2026-11-30":
                                    continue
                                events.append(dict(base, event=kind, email=email, timestamp=t2,
                                                   sent=ts))
                    if rnd.random() < 0.02:
                        events.append(dict(base, event="spamreport", email=email,
                                           timestamp=ts + 3600))
                    if rnd.random() < 0.02:
                        events.append(dict(base, event=rnd.choice(["unsubscribe",
                                                                   "group_unsubscribe"]),
                                           email=email, timestamp=ts + 7200))
    events.sort(key=lambda e: e["timestamp"])
    counts, seen = {}, set()
    for ev in events:
        m = metrics_of(ev)
        if ev["event"] in ("open", "click"):
            key = (ev["event"], ev["tenant"], ev["sg_message_id"], ev["email"])
            if key not in seen:
                seen.add(key)
                m["unique_" + ev["event"] + "s"] = 1
        day = day_of(ev["timestamp"])
        for tenant in (ev["tenant"], "*"):
            for cat in [""] + ev.get("category", []):
                c = counts.setdefault(f"{tenant}|{day}|{cat}", {})
                for k, v in m.items():
                    c[k] = c.get(k, 0) + v
    with open(path, "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    json.dump(counts, open(expect_path, "w"))
    print(len(events))


def period(day, agg):
    d = datetime.date.fromisoformat(day)
    if agg == "month":
        return d.replace(day=1).isoformat()
    if agg == "week":
        return (d - datetime.timedelta(days=d.weekday())).isoformat()
    return day


def check(expect_path, stats_path, tenant, agg, cats):
    counts = json.load(open(expect_path))
    got = json.load(open(stats_path))
    want = {}
    for key, m in counts.items():
        t, day, cat = key.split("|")
        if t != tenant or (cats and cat not in cats) or (not cats and cat):
            continue
        p = want.setdefault((period(day, agg), cat), {})
        for k, v in m.items():
            p[k] = p.get(k, 0) + v
    figures = 0
    for entry in got:
        for st in entry["stats"]:
            cat = st.get("name", "") if cats else ""
            if cats and st.get("type") != "category":
                sys.exit(f"{entry['date']}: a category entry without type: {st}")
            w = want.pop((entry["date"], cat), {})
            for k in METRICS:
                figures += 1
                if st["metrics"][k] != w.get(k, 0):
                    sys.exit(f"{tenant} {agg} {entry['date']} {cat or '(all)'} {k}: "
                             f"sgadmin {st['metrics'][k]}, expected {w.get(k, 0)}")
    left = {k: v for k, v in want.items() if any(v.values())}
    if left:
        sys.exit(f"periods sgadmin did not list: {sorted(left)[:5]}")
    print(figures)


if sys.argv[1] == "gen":
    gen(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
