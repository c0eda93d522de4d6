#!/usr/bin/python3
"""tracker_pages - sgtrackd's unsubscribe and preferences pages in a real
headless Chromium (Debian's python3-selenium, chromium-driver, chromium),
driven as a person would: load the page, read it, click its buttons; after
each click the store and the event log are asked through sgadmin what
really happened, not only the page.

    tracker_pages.py --message FILE --base URL --public URL --rcpt ADDR
                     --sgadmin PATH --conf FILE --artifacts DIR

FILE is the message track_message made for ADDR: its List-Unsubscribe
field gives the /u/ page and its body the /p/ link, both under PUBLIC (the
configured tracker.url), which BASE (the daemon's own http://HOST:PORT)
replaces.  The groups are 1 "Newsletter" and 2 "Offers", the sender "Acme
Shop".  Screenshots of each state go to DIR/tracker-*.png.

One line a check ("ok N - what" or "FAIL N - what: why"); exit 0 when all
passed, 1 when one failed, 77 when selenium or chromium is missing.
"""
import argparse
import base64
import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    print(f"tracker_pages.py: SKIP: no selenium ({e}); apt-get install python3-selenium")
    sys.exit(77)

GROUPS = {1: "Newsletter", 2: "Offers"}
SENDER = "Acme Shop"
DESKTOP = (900, 700)
PHONE = (390, 844)


class Checks:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def __call__(self, what, cond, why=""):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {self.n} - {what}" + (f": {why}" if why else ""), flush=True)
        return cond


check = Checks()


def short(s, n=300):
    s = str(s)
    return s if len(s) <= n else s[:n] + "..."


# ---- the store, through sgadmin ----

def sgadmin(args, opts, want_json=True):
    cmd = [opts.sgadmin, "-c", opts.conf] + (["--json"] if want_json else []) + args
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout) if want_json else p.stdout


def lists_of(opts):
    """(list, group) of every entry the recipient matches"""
    j = sgadmin(["lookup", opts.rcpt], opts)
    return sorted((m["list"], m.get("group") or 0) for m in j["matches"])


def in_group(opts, gid):
    return opts.rcpt in sgadmin(["group-suppressions", "list", str(gid)], opts)


def globally_unsubscribed(opts):
    return any(e.get("email") == opts.rcpt for e in sgadmin(["unsubscribes", "list"], opts))


def events(opts, etype):
    return [e for e in sgadmin(["events", "list", "--type", etype], opts)
            if e.get("email") == opts.rcpt]


# ---- the message ----

def message_urls(opts):
    """the /u/ URL of List-Unsubscribe and the /p/ link of the body"""
    with open(opts.message, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    lu = str(msg.get("List-Unsubscribe", ""))
    lu = re.sub(r"\s+", " ", lu)
    pub = re.escape(opts.public.rstrip("/"))
    u = re.search(r"<(" + pub + r"/u/[A-Za-z0-9_-]+)>", lu)
    check("List-Unsubscribe carries an https /u/ URL", u is not None, short(lu))
    check("List-Unsubscribe carries a mailto: too", "<mailto:" in lu, short(lu))
    body = msg.get_body(preferencelist=("html",))
    html = body.get_content() if body is not None else ""
    p = re.search(r'href="(' + pub + r'/p/[A-Za-z0-9_-]+)"', html)
    check("the body links the preferences page /p/", p is not None, short(html))
    if u is None or p is None:
        raise SystemExit(finish())

    def local(url):
        return opts.base.rstrip("/") + url[len(opts.public.rstrip("/")):]

    return local(u.group(1)), local(p.group(1))


# ---- headers, through a plain HTTP client ----

def header_problems(headers):
    """what the pages' strict headers lack; headers: a dict, lower-case names"""
    bad = []
    csp = headers.get("content-security-policy", "")
    dirs = {}
    for d in csp.split(";"):
        d = d.strip().split()
        if d:
            dirs[d[0].lower()] = d[1:]
    if dirs.get("default-src") != ["'none'"]:
        bad.append(f"CSP default-src is not 'none': {csp!r}")
    if dirs.get("style-src") != ["'unsafe-inline'"]:
        bad.append(f"CSP style-src is not 'unsafe-inline' alone: {csp!r}")
    if dirs.get("form-action") != ["'self'"]:
        bad.append(f"CSP form-action is not 'self': {csp!r}")
    if any(k.startswith("script-src") or k in ("img-src", "connect-src", "frame-src")
           for k in dirs):
        bad.append(f"CSP lets something in past default-src: {csp!r}")
    if headers.get("x-content-type-options", "").lower() != "nosniff":
        bad.append(f"X-Content-Type-Options: {headers.get('x-content-type-options')!r}")
    if headers.get("referrer-policy", "").lower() != "no-referrer":
        bad.append(f"Referrer-Policy: {headers.get('referrer-policy')!r}")
    if headers.get("content-type", "").lower().replace(" ", "") != "text/html;charset=utf-8":
        bad.append(f"Content-Type: {headers.get('content-type')!r}")
    return bad


HEADERS = ("CSP default-src 'none', style-src 'unsafe-inline', form-action 'self'; "
           "nosniff; no-referrer")


def http_get(url):
    req = urllib.request.Request(url, headers={"User-Agent": "tracker_pages.py"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()


# ---- the browser ----

def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    drv = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    if chromium is None or drv is None:
        print("tracker_pages.py: SKIP: no chromium or chromedriver; "
              "apt-get install chromium chromium-driver")
        sys.exit(77)
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--no-first-run",
              "--no-default-browser-check", "--disable-extensions", "--disable-sync",
              "--disable-background-networking", "--disable-component-update",
              "--disable-default-apps", "--disable-domain-reliability",
              "--disable-client-side-phishing-detection", "--disable-features=Translate",
              "--hide-scrollbars", "--force-color-profile=srgb", "--lang=en-US",
              # whatever the browser itself would fetch from elsewhere goes
              # to a closed port (loopback bypasses a proxy by itself)
              "--proxy-server=http://127.0.0.1:9"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=drv), options=o)
    d.set_page_load_timeout(20)
    viewport(d, DESKTOP, mobile=False)
    return d


def viewport(d, size, mobile):
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": size[0], "height": size[1], "deviceScaleFactor": 1,
                       "mobile": mobile})


def screenshot(d, opts, name, size):
    """the whole page at least a viewport high, to DIR/tracker-NAME.png"""
    m = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
    h = max(size[1], int(m.get("cssContentSize", m.get("contentSize"))["height"] + 0.5))
    shot = d.execute_cdp_cmd("Page.captureScreenshot",
                             {"format": "png", "captureBeyondViewport": True,
                              "clip": {"x": 0, "y": 0, "width": size[0], "height": h,
                                       "scale": 1}})
    path = os.path.join(opts.artifacts, f"tracker-{name}.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    check(f"screenshot {os.path.basename(path)} ({size[0]}x{h})", os.path.getsize(path) > 1000)


def network(d):
    """the page's requests and document responses since the last call:
    [(url, method, referer)], [(method, url, status, {headers})]"""
    reqs, resps, method = [], [], {}
    for entry in d.get_log("performance"):
        m = json.loads(entry["message"])["message"]
        p = m.get("params", {})
        if m.get("method") == "Network.requestWillBeSent":
            r = p["request"]
            hdrs = {k.lower(): v for k, v in r.get("headers", {}).items()}
            reqs.append((r["url"], r["method"], hdrs.get("referer")))
            method[p.get("requestId")] = r["method"]
        elif m.get("method") == "Network.responseReceived" and p.get("type") == "Document":
            r = p["response"]
            resps.append((method.get(p.get("requestId"), "?"), r["url"], r["status"],
                          {k.lower(): v for k, v in r.get("headers", {}).items()}))
    return reqs, resps


def page_checks(d, opts, where):
    """what every page must be in the browser: nothing but itself loaded, no
    script, no overflow, the landmarks; the network since the last call"""
    reqs, resps = network(d)
    origin = opts.base.rstrip("/")
    foreign = [u for u, _, _ in reqs if not (u + "/").startswith(origin + "/")]
    check(f"{where}: the browser requested nothing from elsewhere", not foreign, foreign)
    sub = [u for u, _, _ in reqs if "/favicon.ico" not in u and "/u/" not in u and "/p/" not in u]
    check(f"{where}: the browser requested nothing but the page", not sub, sub)
    leaked = [(u, r) for u, _, r in reqs if r]
    check(f"{where}: no Referer sent (the token stays out of logs)", not leaked, leaked)
    errs = [e["message"] for e in d.get_log("browser")
            if e.get("level") == "SEVERE" and "favicon.ico" not in e.get("message", "")]
    check(f"{where}: the console shows no error (no CSP violation, nothing failed)",
          not errs, errs)
    res = d.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    check(f"{where}: no subresource in performance entries", res == [], res)
    docs = [(meth, urllib.parse.urlparse(url).path[:3], status, hdrs)
            for meth, url, status, hdrs in resps
            if not url.startswith("data:")]  # the browser's first, empty page
    check(f"{where}: the browser loaded it as one document: "
          + ", ".join(f"{meth} {path} {status}" for meth, path, status, _ in docs),
          len(docs) == 1 and docs[0][2] == 200, docs)
    for meth, path, status, hdrs in docs:
        bad = header_problems(hdrs)
        check(f"{where}: {meth} {path} headers in the browser: {HEADERS}", not bad, bad)
    info = d.execute_script("""
        const on = [];
        for (const el of document.querySelectorAll('*'))
            for (const a of el.attributes)
                if (/^on/i.test(a.name) || /^\\s*javascript:/i.test(a.value)) on.push(el.tagName + ' ' + a.name);
        return {scripts: document.scripts.length, on: on,
                iframes: document.querySelectorAll('iframe,object,embed,img,link[rel=stylesheet]').length,
                lang: document.documentElement.lang,
                mains: document.querySelectorAll('main').length,
                h1: Array.from(document.querySelectorAll('h1')).map(h => h.textContent),
                title: document.title,
                overflow: document.documentElement.scrollWidth - window.innerWidth};
    """)
    check(f"{where}: no <script> element", info["scripts"] == 0, info["scripts"])
    check(f"{where}: no on* handler or javascript: URL", not info["on"], info["on"])
    check(f"{where}: no image, frame, object or stylesheet", info["iframes"] == 0, info["iframes"])
    check(f"{where}: lang, one <main>, one <h1>",
          info["lang"] == "en" and info["mains"] == 1 and len(info["h1"]) == 1, info)
    check(f"{where}: no horizontal scrolling", info["overflow"] <= 0, info["overflow"])
    # CSP in force: a script put in now does not run, a violation is reported
    ran = d.execute_script("""
        window.__violations = 0;
        document.addEventListener('securitypolicyviolation', () => window.__violations++);
        const s = document.createElement('script');
        s.textContent = 'window.__ran = 1';
        document.head.appendChild(s);
        return window.__ran === 1;
    """)
    time.sleep(0.05)
    blocked = d.execute_script("return window.__violations")
    check(f"{where}: the browser enforces the CSP (an inline script is refused)",
          ran is False and blocked >= 1, f"ran={ran} violations={blocked}")
    d.get_log("browser")  # the refusal just provoked
    return info


def text(d):
    return d.find_element(By.TAG_NAME, "body").text


def notice(d):
    els = d.find_elements(By.CSS_SELECTOR, "p.notice[role=status]")
    return els[0].text if els else None


def click(d, button):
    """click a button and wait for the page its form answers"""
    old = d.find_element(By.TAG_NAME, "html")
    button.click()

    def gone(_):
        # the old page's element stale: chromedriver says so either with
        # StaleElementReferenceException (what staleness_of catches) or,
        # now and then, with "Node with given id does not belong to the
        # document", a plain WebDriverException
        try:
            old.is_enabled()
            return False
        except WebDriverException:
            return True
    WebDriverWait(d, 10).until(gone)
    WebDriverWait(d, 10).until(lambda x: x.execute_script("return document.readyState") ==
                               "complete")


def group_row(d, gid):
    """a group's row; button and action None when it has no form (all mail unsubscribed)"""
    li = d.find_element(By.XPATH, f"//li[.//span[@class='group' and @id='g{gid}']]")
    buttons = li.find_elements(By.CSS_SELECTOR, "button[type=submit]")
    actions = li.find_elements(By.CSS_SELECTOR, "input[name=action]")
    return {"name": li.find_element(By.CSS_SELECTOR, "span.group").text,
            "state": li.find_element(By.CSS_SELECTOR, "span.state").text,
            "button": buttons[0] if buttons else None,
            "action": actions[0].get_attribute("value") if actions else None}


def all_button(d):
    return [b for b in d.find_elements(By.CSS_SELECTOR, "button[type=submit]")
            if b.text.strip() == "Unsubscribe from all mail"]


def ax_buttons(d):
    """each button's accessible name and description, as a screen reader gets them"""
    out = []
    for n in d.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]:
        if n.get("role", {}).get("value") == "button" and not n.get("ignored"):
            out.append((n.get("name", {}).get("value", ""),
                        n.get("description", {}).get("value", "")))
    return out


# ---- the test ----

def run(opts):
    u_url, p_url = message_urls(opts)

    # the headers, by a plain client (a GET changes nothing)
    for name, url in (("GET /u/", u_url), ("GET /p/", p_url)):
        status, hdrs, _ = http_get(url)
        check(f"{name} by urllib answers 200", status == 200, status)
        bad = header_problems(hdrs)
        check(f"{name} by urllib: {HEADERS}", not bad, bad)
    try:
        http_get(opts.base.rstrip("/") + "/u/AAAA")
        check("a forged /u/ token is answered 404", False, "200")
    except urllib.error.HTTPError as e:
        check("a forged /u/ token is answered 404", e.code == 404, e.code)
    check("the GETs left bob on no list", lists_of(opts) == [], lists_of(opts))

    d = browser()
    try:
        # 1. the unsubscribe page
        d.get(u_url)
        t = text(d)
        check("unsubscribe page: h1 'Unsubscribe'",
              d.find_element(By.TAG_NAME, "h1").text == "Unsubscribe", t)
        check("unsubscribe page: names the group Newsletter", "Newsletter" in t, t)
        check("unsubscribe page: names the sender Acme Shop",
              SENDER in t or SENDER.upper() in t, t)
        masked = opts.rcpt[0] + "\u2026@" + opts.rcpt.split("@")[1]
        check(f"unsubscribe page: shows the masked address {masked}", masked in t, t)
        check("unsubscribe page: not the whole address", opts.rcpt not in d.page_source)
        check("unsubscribe page: the title names it",
              d.title == f"Unsubscribe \u2013 {SENDER}", d.title)
        page_checks(d, opts, "unsubscribe page")
        check("loading the unsubscribe page (GET) unsubscribed nobody",
              lists_of(opts) == [] and not events(opts, "group_unsubscribe"), lists_of(opts))
        screenshot(d, opts, "unsubscribe", DESKTOP)
        viewport(d, PHONE, mobile=True)
        d.refresh()
        page_checks(d, opts, "unsubscribe page, phone width")
        screenshot(d, opts, "unsubscribe-phone", PHONE)
        viewport(d, DESKTOP, mobile=False)
        d.refresh()
        network(d)
        check("the refreshes (GET) still unsubscribed nobody", lists_of(opts) == [],
              lists_of(opts))

        buttons = d.find_elements(By.CSS_SELECTOR, "form[method=post] button[type=submit]")
        check("unsubscribe page: one Unsubscribe button",
              [b.text for b in buttons] == ["Unsubscribe"], [b.text for b in buttons])
        click(d, buttons[0])
        t = text(d)
        check("confirmation: h1 'Unsubscribed'",
              d.find_element(By.TAG_NAME, "h1").text == "Unsubscribed", t)
        n = notice(d)
        check("confirmation: a role=status notice naming Newsletter and the address",
              n is not None and "Newsletter" in n and masked in n, n)
        check("confirmation: no button left", not d.find_elements(By.TAG_NAME, "button"))
        page_checks(d, opts, "confirmation page")
        screenshot(d, opts, "unsubscribed", DESKTOP)
        check("store: bob in group 1's suppressions", in_group(opts, 1))
        check("store: bob not in group 2's", not in_group(opts, 2))
        check("store: no global unsubscribe", not globally_unsubscribed(opts))
        check("store: lookup finds bob on group 1 alone",
              lists_of(opts) == [("group", 1)], lists_of(opts))
        ev = events(opts, "group_unsubscribe")
        check("event log: one group_unsubscribe with asm_group_id 1",
              len(ev) == 1 and ev[0].get("asm_group_id") == 1, ev)
        check("event log: it names the browser (useragent) and the message",
              ev and "Chrome" in ev[0].get("useragent", "") and
              ev[0].get("sg_message_id") == "TRACKTEST", ev)
        check("event log: no global unsubscribe event", not events(opts, "unsubscribe"))

        # the link to the preferences, followed
        link = d.find_element(By.LINK_TEXT, "Manage all your email preferences")
        click(d, link)
        check("the preferences link leads to /p/",
              urllib.parse.urlparse(d.current_url).path.startswith("/p/"), d.current_url)

        # 2. the preferences page
        t = text(d)
        check("preferences: h1 'Email preferences'",
              d.find_element(By.TAG_NAME, "h1").text == "Email preferences", t)
        check("preferences: names the sender and the masked address",
              (SENDER in t or SENDER.upper() in t) and masked in t, t)
        nl, of = group_row(d, 1), group_row(d, 2)
        check("preferences: Newsletter shows Unsubscribed, button Resubscribe",
              (nl["name"], nl["state"], nl["button"].text, nl["action"]) ==
              ("Newsletter", "Unsubscribed", "Resubscribe to Newsletter", "resubscribe"), nl)
        check("preferences: Offers shows Subscribed, button Unsubscribe",
              (of["name"], of["state"], of["button"].text, of["action"]) ==
              ("Offers", "Subscribed", "Unsubscribe from Offers", "unsubscribe"), of)
        check("preferences: Newsletter's description shown", "Weekly news" in t, t)
        check("preferences: offers 'Unsubscribe from all mail'", len(all_button(d)) == 1)
        check("preferences: no notice before any change", notice(d) is None, notice(d))
        page_checks(d, opts, "preferences page")
        ax = ax_buttons(d)
        print("# buttons as a screen reader gets them (name, description): " + repr(ax))
        check("preferences: each group's button names its group",
              [a[0] for a in ax if a[0] != "Unsubscribe from all mail"] ==
              ["Resubscribe to Newsletter", "Unsubscribe from Offers"], ax)
        screenshot(d, opts, "preferences-before", DESKTOP)
        viewport(d, PHONE, mobile=True)
        d.refresh()
        page_checks(d, opts, "preferences page, phone width")
        screenshot(d, opts, "preferences-phone", PHONE)
        viewport(d, DESKTOP, mobile=False)
        d.refresh()
        network(d)

        click(d, group_row(d, 1)["button"])
        n = notice(d)
        check("resubscribe: notice 'You are subscribed to Newsletter again.'",
              n == "You are subscribed to Newsletter again.", n)
        nl = group_row(d, 1)
        check("resubscribe: Newsletter now Subscribed, button Unsubscribe",
              (nl["state"], nl["button"].text) == ("Subscribed", "Unsubscribe from Newsletter"), nl)
        page_checks(d, opts, "preferences after resubscribing")
        screenshot(d, opts, "preferences-resubscribed", DESKTOP)
        check("store: bob no longer in group 1", not in_group(opts, 1))
        check("store: lookup finds bob on no list", lists_of(opts) == [], lists_of(opts))
        ev = events(opts, "group_resubscribe")
        check("event log: a group_resubscribe with asm_group_id 1",
              len(ev) == 1 and ev[0].get("asm_group_id") == 1, ev)

        click(d, group_row(d, 2)["button"])
        n = notice(d)
        check("unsubscribe Offers: notice 'You are unsubscribed from Offers.'",
              n == "You are unsubscribed from Offers.", n)
        of = group_row(d, 2)
        check("unsubscribe Offers: Offers now Unsubscribed, button Resubscribe",
              (of["state"], of["button"].text) == ("Unsubscribed", "Resubscribe to Offers"), of)
        page_checks(d, opts, "preferences after unsubscribing from Offers")
        check("store: bob in group 2", in_group(opts, 2))
        check("store: and still not in group 1", not in_group(opts, 1))
        ev = events(opts, "group_unsubscribe")
        check("event log: a group_unsubscribe with asm_group_id 2",
              any(e.get("asm_group_id") == 2 for e in ev), ev)

        click(d, all_button(d)[0])
        n = notice(d)
        check("unsubscribe all: notice 'You are unsubscribed from all mail.'",
              n == "You are unsubscribed from all mail.", n)
        t = text(d)
        check("unsubscribe all: the page says so",
              f"is unsubscribed from all mail from {SENDER}" in t, t)
        check("unsubscribe all: no 'Unsubscribe from all mail' button any more",
              not all_button(d))
        page_checks(d, opts, "preferences after unsubscribing from all")
        screenshot(d, opts, "preferences-after", DESKTOP)
        check("store: bob on the global unsubscribe list", globally_unsubscribed(opts))
        check("store: lookup finds unsubscribes and group 2",
              lists_of(opts) == [("group", 2), ("unsubscribes", 0)], lists_of(opts))
        check("store: lookup's decision for group 1 is drop (unsubscribe)",
              sgadmin(["lookup", opts.rcpt, "--group", "1"], opts)["decision"] == "drop")
        ev = events(opts, "unsubscribe")
        check("event log: one (global) unsubscribe", len(ev) == 1, ev)

        # the body's own /p/ link shows the same state
        d.get(p_url)
        gone = "Not sent (unsubscribed from all mail)"
        check("the body's /p/ link: every group not sent, no group form, no 'all' button",
              group_row(d, 2)["state"] == gone and group_row(d, 1)["state"] == gone and
              group_row(d, 1)["button"] is None and not all_button(d))
        page_checks(d, opts, "the body's /p/ link")
        viewport(d, PHONE, mobile=True)
        d.refresh()
        page_checks(d, opts, "preferences after all, phone width")
        screenshot(d, opts, "preferences-after-phone", PHONE)

    finally:
        d.quit()


def finish():
    print(f"tracker_pages.py: {check.n} checks, {check.failed} failed")
    return 1 if check.failed else 0


def main():
    ap = argparse.ArgumentParser()
    for a in ("message", "base", "public", "rcpt", "sgadmin", "conf", "artifacts"):
        ap.add_argument("--" + a, required=True)
    opts = ap.parse_args()
    os.makedirs(opts.artifacts, exist_ok=True)
    try:
        run(opts)
    except SystemExit:
        raise
    except WebDriverException as e:
        if "cannot find Chrome binary" in str(e) or "unable to discover" in str(e).lower():
            print(f"tracker_pages.py: SKIP: cannot start chromium: {short(e)}")
            sys.exit(77)
        check("the browser session ran to its end", False, traceback.format_exc())
    except Exception:
        check("the test ran to its end", False, traceback.format_exc())
    sys.exit(finish())


if __name__ == "__main__":
    main()
