#!/usr/bin/python3
"""stats_report - the page "sgadmin report --html" writes, in a real headless
Chromium (the browser tracker_pages.py starts: nothing can be fetched from
elsewhere), held to the month it was made from.

    stats_report.py PAGE EXPECT.json EVENTS.jsonl TENANT ARTIFACTS

PAGE is the report of TENANT for November 2026 by day; EXPECT.json and
EVENTS.jsonl are stats_month.py's.  Checked: no script and nothing loaded
but the page itself (its CSP allows nothing else); every tile is the
month's total; 30 rows per period, each row's figures the day's; the chart
has its four lines of 30 points and the complaint chart its 0.3 % line; the
top bounce reasons are the month's, most first; the page fits a phone's
width but for its table.  Screenshots at desktop and phone widths go to
ARTIFACTS/stats-report-*.png.  One line a check; exit 1 when one failed.
"""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tracker_pages as tp  # noqa: E402  (the browser and the checks)
from selenium.webdriver.common.by import By  # noqa: E402

page, expect_path, events_path, tenant, artifacts = sys.argv[1:6]
check = tp.check
counts = json.load(open(expect_path))
day = {}
total = {}
for key, m in counts.items():
    t, d, cat = key.split("|")
    if t != tenant or cat:
        continue
    day[d] = m
    for k, v in m.items():
        total[k] = total.get(k, 0) + v
reasons = {}
for line in open(events_path):
    ev = json.loads(line)
    if ev["event"] == "bounce" and ev["tenant"] == tenant:
        r = ev.get("reason") or "(no reason given)"
        reasons[r] = reasons.get(r, 0) + 1


def shot(d, name, size):
    m = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
    h = max(size[1], int(m.get("cssContentSize", m.get("contentSize"))["height"] + 0.5))
    s = d.execute_cdp_cmd("Page.captureScreenshot",
                          {"format": "png", "captureBeyondViewport": True,
                           "clip": {"x": 0, "y": 0, "width": size[0], "height": h, "scale": 1}})
    path = os.path.join(artifacts, f"stats-report-{name}.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(s["data"]))
    check(f"screenshot {os.path.basename(path)} ({size[0]}x{h})", os.path.getsize(path) > 5000)


d = tp.browser()
try:
    d.get("file://" + os.path.abspath(page))
    check("the title", d.title == "sendguard report", d.title)
    check("no script", d.execute_script("return document.scripts.length") == 0)
    res = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    check("nothing loaded but the page", res == [], str(res))
    csp = d.find_element(By.CSS_SELECTOR, "meta[http-equiv='Content-Security-Policy']")
    check("a CSP that allows nothing else", "default-src 'none'" in csp.get_attribute("content"))
    for name in ("requests", "delivered", "bounces", "blocks", "spam_reports", "unsubscribes",
                 "opens", "unique_opens", "clicks", "unique_clicks"):
        got = d.find_element(By.CSS_SELECTOR, f"#{name} b").text
        check(f"tile {name} = {total.get(name, 0)}", got == str(total.get(name, 0)), got)
    rate = 100.0 * total.get("spam_reports", 0) / max(total.get("delivered", 0), 1)
    got = d.find_element(By.CSS_SELECTOR, "#complaint_rate b").text
    check(f"complaint rate {rate:.3f}%", got == f"{rate:.3f}%", got)
    rows = d.find_elements(By.CSS_SELECTOR, "#periods tr")[1:]
    check("30 days in the table", len(rows) == 30, str(len(rows)))
    cols = ["requests", "delivered", "bounces", "blocks", "spam_reports", "unsubscribes",
            "opens", "unique_opens", "clicks", "unique_clicks"]
    bad = []
    for r in rows:
        cells = [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        want = [cells[0]] + [str(day.get(cells[0], {}).get(k, 0)) for k in cols]
        if cells != want:
            bad.append(f"{cells} != {want}")
    check("every day's figures", not bad, "; ".join(bad[:2]))
    lines = d.find_elements(By.CSS_SELECTOR, "svg polyline")
    check("four lines", len(lines) == 4, str(len(lines)))
    check("of 30 points each",
          all(len(p.get_attribute("points").split()) == 30 for p in lines))
    check("the 0.3% line", len(d.find_elements(By.CSS_SELECTOR, "svg line.limit")) == 1)
    top = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
           for r in d.find_elements(By.CSS_SELECTOR, "#reasons tr")[1:]]
    want = [[r, str(n)] for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:10]]
    check("the top bounce reasons, most first", top == want, f"{top} != {want}")
    shot(d, "desktop", tp.DESKTOP)
    tp.viewport(d, tp.PHONE, mobile=True)
    d.get("file://" + os.path.abspath(page))
    w = d.execute_script("return document.body.scrollWidth")
    check(f"a phone's width ({w} px) but for the table's own scroll", w <= tp.PHONE[0] + 1, str(w))
    shot(d, "phone", tp.PHONE)
finally:
    d.quit()
print(f"stats_report: {check.n} checks, {check.failed} failed")
sys.exit(1 if check.failed else 0)
