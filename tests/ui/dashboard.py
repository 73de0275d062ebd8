#!/usr/bin/env python3
"""End-to-end test of the Sluice dashboard (gateway-user/ui) in headless Chromium.

Run by the e2e test after it has started a daemon, a sandbox lab and HTTPS test hosts. Reads:

  SLUICE_UI_URL            the dashboard, http://127.0.0.1:PORT/ui/
  SLUICE_UI_BASE           the control API, http://127.0.0.1:PORT (direct calls)
  SLUICE_ADMIN_TOKEN       the admin token
  SLUICE_UI_FETCH          `$SLUICE_UI_FETCH SESSION URL` makes one request from a sandbox
                           enrolled under SESSION and prints the status (000: refused)
  SLUICE_UI_SESSION        an enforcing session
  SLUICE_UI_AUDIT_SESSION  a session with enforcement `audit`
  SLUICE_UI_ALLOWED_URL    a URL SLUICE_UI_SESSION may reach (200)
  SLUICE_UI_REFUSED_URL    a URL its policy refuses (403 from Sluice, with a reason)
  SLUICE_UI_POLICY_URL     optional: what the audit session's policy would refuse
                           (default SLUICE_UI_REFUSED_URL)
  SLUICE_UI_CREATE_HOST    host of the session the UI creates (allow list, credential)
  SLUICE_UI_CREATE_URL     a URL on that host
  SLUICE_UI_SCREENSHOTS    where live.png and session.png go

Each request gets a `sluice_ui=<nonce>` query parameter so its row can be told apart from
every other (the test hosts must answer the same whatever the query). Prints `PASS name` per
scenario; on the first failure prints `FAIL name: why`, saves fail-<name>.png and exits 1.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# How soon a sandbox's request must show in the live view, from when the fetch returns.
LIVE_MS = 1000
# Waits that are not the subject of a scenario (page loads, API round trips).
WAIT_MS = 10000
# Revocation takes effect within a second on every node; allow some slack.
REVOKE_S = 5
# The audit session's request before the suggestion is applied (audit: let through).
AUDIT_STATUS_BEFORE = {"200"}
# Every file the daemon embeds under /ui/ (include_str!), served unauthenticated.
ASSETS = {
    "": "text/html", "index.html": "text/html", "style.css": "text/css",
    "app.js": "javascript", "api.js": "javascript", "dom.js": "javascript",
    "stream.js": "javascript", "live.js": "javascript", "sessions.js": "javascript",
    "sandboxes.js": "javascript", "policy.js": "javascript", "node.js": "javascript",
}
# `<` and `>` reach the audit log percent-encoded (an HTTP path cannot carry them), so the path
# also carries HTML entities, which may go raw: markup parsing would show them decoded.
XSS_PATH = "/sluice-ui-xss/<script>alert(1)</script>/&lt;i&gt;canary&lt;/i&gt;&amp;"
XSS_QUERY = '"><img src=x onerror=alert(1)>'


class Failed(Exception):
    """A scenario's expectation did not hold."""


def need(name):
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"dashboard.py: environment variable {name} is not set")
    return value


def check(condition, message):
    if not condition:
        raise Failed(message)


def nonce():
    return uuid.uuid4().hex[:12]


def tagged(url, tag):
    """`url` with `sluice_ui=<tag>` added to its query."""
    parts = urllib.parse.urlsplit(url)
    query = f"{parts.query}&sluice_ui={tag}" if parts.query else f"sluice_ui={tag}"
    return urllib.parse.urlunsplit(parts._replace(query=query))


def host_of(url):
    return urllib.parse.urlsplit(url).hostname


class Env:
    """The run's settings, read once."""

    def __init__(self):
        self.ui = need("SLUICE_UI_URL")
        self.base = need("SLUICE_UI_BASE").rstrip("/")
        self.token = need("SLUICE_ADMIN_TOKEN")
        self.fetch_cmd = need("SLUICE_UI_FETCH")
        self.session = need("SLUICE_UI_SESSION")
        self.audit_session = need("SLUICE_UI_AUDIT_SESSION")
        self.allowed = need("SLUICE_UI_ALLOWED_URL")
        self.refused = need("SLUICE_UI_REFUSED_URL")
        self.policy_url = os.environ.get("SLUICE_UI_POLICY_URL", "").strip() or self.refused
        self.create_host = need("SLUICE_UI_CREATE_HOST")
        self.create_url = need("SLUICE_UI_CREATE_URL")
        self.shots = need("SLUICE_UI_SCREENSHOTS")
        os.makedirs(self.shots, exist_ok=True)

    def fetch(self, session, url):
        """One request from a sandbox of `session`; its HTTP status as text."""
        done = subprocess.run([self.fetch_cmd, session, url], capture_output=True, text=True, timeout=120)
        lines = done.stdout.strip().splitlines()
        check(done.returncode == 0 and lines,
              f"{self.fetch_cmd} {session} {url}: exit {done.returncode}, stdout {done.stdout!r}, stderr {done.stderr.strip()!r}")
        return lines[-1].strip()

    def api(self, method, path, body=None, auth="token"):
        """A direct API call: (status, headers, parsed JSON or text). `auth`: token, None or a header."""
        headers = {"Accept": "application/json"}
        if auth == "token":
            headers["Authorization"] = f"Bearer {self.token}"
        elif auth:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as res:
                status, head, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as e:
            status, head, raw = e.code, e.headers, e.read()
        text = raw.decode(errors="replace")
        try:
            return status, head, json.loads(text)
        except ValueError:
            return status, head, text

    def record(self, session, tag, timeout_s=5):
        """The audit record of the request tagged `tag`, read back through the API."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, _, page = self.api("GET", f"/v1/audit?session={urllib.parse.quote(session)}&kind=request&limit=500")
            check(status == 200, f"GET /v1/audit: {status} {page}")
            found = [r for r in page["records"] if tag in (r.get("url") or "")]
            if found:
                return found[-1]
            check(time.monotonic() < deadline, f"no audit record of the request tagged {tag} after {timeout_s} s")
            time.sleep(0.2)


class Ui:
    """The browser page and what it reported (dialogs, console errors, page errors)."""

    def __init__(self, page, env):
        self.page = page
        self.env = env
        self.problems = []
        self.tolerated = []  # substrings of console errors a scenario expects
        page.on("dialog", self.on_dialog)
        page.on("console", lambda m: m.type == "error" and self.note(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def on_dialog(self, dialog):
        self.problems.append(f"dialog ({dialog.type}): {dialog.message}")
        dialog.dismiss()

    def note(self, text):
        if not any(t in text for t in self.tolerated):
            self.problems.append(text)

    def assert_clean(self):
        problems, self.problems = self.problems, []
        check(not problems, "the page reported: " + "; ".join(problems))

    def by(self, testid):
        return self.page.get_by_test_id(testid)

    def nav(self, name):
        self.by(f"nav-{name}").click()

    def rows(self, tag, testid="live-row"):
        """Table rows whose URL cell contains `tag`."""
        return self.by(testid).filter(has=self.by("cell-url").filter(has_text=tag))

    def live_filter(self, **values):
        self.nav("live")
        self.by("filter-clear").click()
        for key, value in values.items():
            self.by(f"filter-{key}").fill(value)


def login(ui):
    env = ui.env
    ui.page.goto(env.ui)
    ui.by("login-token").fill(env.token)
    ui.by("login-submit").click()
    expect(ui.by("nav-live")).to_be_visible(timeout=WAIT_MS)
    expect(ui.by("stream-status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def scenario_live(ui):
    """A sandbox's request shows within LIVE_MS; the session filter; the refusal's reason."""
    env = ui.env
    login(ui)
    # Each wait names its request (host filter = its nonce): under other traffic a row soon
    # scrolls out of the (virtual) table, which draws only the rows in view.
    tag = nonce()
    ui.live_filter(host=tag)
    status = env.fetch(env.session, tagged(env.allowed, tag))
    check(status == "200", f"allowed URL under {env.session}: status {status}, expected 200")
    expect(ui.rows(tag).first).to_be_visible(timeout=LIVE_MS)

    other = nonce()
    ui.live_filter(host=other)
    env.fetch(env.audit_session, tagged(env.allowed, other))
    expect(ui.rows(other).first).to_be_visible(timeout=WAIT_MS)
    ui.live_filter(session=env.session, host=other)
    expect(ui.rows(other)).to_have_count(0, timeout=WAIT_MS)
    ui.live_filter(session=env.session, host=tag)
    expect(ui.rows(tag).first).to_be_visible(timeout=WAIT_MS)
    ui.live_filter(session=env.session)
    expect(ui.by("live-row").first).to_be_visible(timeout=WAIT_MS)
    sessions = ui.by("live-row").get_by_test_id("cell-session").all_inner_texts()
    wrong = sorted({s for s in sessions if s != env.session})
    check(sessions and not wrong, f"filtered by {env.session}, rows of other sessions show: {wrong}")

    refused = nonce()
    ui.live_filter(session=env.session, host=refused)
    status = env.fetch(env.session, tagged(env.refused, refused))
    check(status == "403", f"refused URL under {env.session}: status {status}, expected 403")
    ui.rows(refused).first.click(timeout=WAIT_MS)
    record = env.record(env.session, refused)
    check(record.get("reason"), f"the refused request's audit record has no reason: {record}")
    expect(ui.by("detail")).to_be_visible()
    expect(ui.by("detail-reason")).to_have_text(record["reason"], timeout=WAIT_MS)
    expect(ui.by("detail-url")).to_have_text(record["url"])
    expect(ui.by("detail-decision")).to_have_text("deny")
    if record.get("conn"):
        expect(ui.by("detail-conn")).to_have_text(record["conn"])
    # The screenshot shows the session's other rows beside the refusal's detail.
    ui.by("filter-host").fill("")
    expect(ui.by("live-row").nth(2)).to_be_visible(timeout=WAIT_MS)
    expect(ui.by("detail-reason")).to_have_text(record["reason"])
    ui.page.screenshot(path=os.path.join(env.shots, "live.png"))


def scenario_session(ui):
    """Create a session with a credential, see its token once, use it, revoke it."""
    env = ui.env
    secret = f"ui-secret-{nonce()}"
    ui.nav("sessions")
    ui.by("create-allow").fill(env.create_host)
    ui.by("cred-name").first.fill("ui_cred")
    ui.by("cred-value").first.fill(secret)
    ui.by("cred-hosts").first.fill(env.create_host)
    ui.by("cred-headers").first.fill("authorization")
    ui.by("create-submit").click()
    expect(ui.by("created-token")).to_be_visible(timeout=WAIT_MS)
    token = ui.by("created-token").inner_text().strip()
    sid = ui.by("created-session-id").inner_text().strip()
    check(token and sid, f"created panel shows token {token!r} and id {sid!r}")
    expect(ui.by("env-lines")).to_contain_text(f'SLUICE_SESSION="{sid}"', timeout=WAIT_MS)
    values = [ui.by("cred-value").nth(i).input_value() for i in range(ui.by("cred-value").count())]
    check(all(v == "" for v in values), "the credential value input was not cleared after submit")
    check(secret not in ui.page.content(), "the credential value is still in the page after submit")

    ui.nav("live")
    ui.nav("sessions")
    expect(ui.by("sessions-table")).to_be_visible()
    expect(ui.by("created-token")).to_have_count(0)
    check(token not in ui.page.content(), "the session token is shown again after navigating back")

    tag = nonce()
    status = env.fetch(sid, tagged(env.create_url, tag))
    check(status == "200", f"{env.create_url} under the new session {sid}: status {status}, expected 200")
    ui.live_filter(session=sid, host=tag)
    expect(ui.rows(tag).first).to_be_visible(timeout=WAIT_MS)

    ui.nav("sessions")
    ui.by("session-id").filter(has_text=sid).click()
    expect(ui.by("session-detail")).to_be_visible()
    expect(ui.by("session-credentials")).to_contain_text("ui_cred")
    check(secret not in ui.page.content(), "the credential value shows in the session detail")
    ui.page.screenshot(path=os.path.join(env.shots, "session.png"), full_page=True)
    ui.by("revoke").click()
    expect(ui.by("confirm-dialog")).to_be_visible()
    ui.by("confirm-ok").click()
    expect(ui.by("session-state")).to_have_text("revoked", timeout=WAIT_MS)
    status, _, view = env.api("GET", f"/v1/sessions/{sid}")
    check(status == 200 and view.get("state") == "revoked", f"GET /v1/sessions/{sid}: {status} {view}")
    deadline = time.monotonic() + REVOKE_S
    while (status := env.fetch(sid, tagged(env.create_url, nonce()))) == "200":
        check(time.monotonic() < deadline, f"{REVOKE_S} s after revoking {sid} its sandbox still gets 200")
    print(f"  revoked session's request: {status}")


def allows(policy, host):
    """Whether `policy` (a PolicySpec) lets `host` through by host name."""
    def match(pattern):
        return pattern == "*" or pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:]))
    allowed = policy.get("allow") is None or any(match(p) for p in policy["allow"])
    return allowed and not any(match(p) for p in policy.get("deny", []))


def scenario_policy(ui):
    """An audit session's would-be refusal, the suggested policy applied in one action."""
    env = ui.env
    sid = env.audit_session
    host = host_of(env.policy_url)
    tag = nonce()
    status = env.fetch(sid, tagged(env.policy_url, tag))
    check(status in AUDIT_STATUS_BEFORE, f"{env.policy_url} under the audit session: status {status}, expected {AUDIT_STATUS_BEFORE}")
    ui.nav("policy")
    ui.by("policy-session").select_option(sid)
    expect(ui.rows(tag, "refusal-row").first).to_be_visible(timeout=WAIT_MS)
    expect(ui.by("suggested-policy")).to_contain_text(f'"{host}"', timeout=WAIT_MS)
    _, _, before = env.api("GET", f"/v1/sessions/{sid}")
    ui.by("apply-suggested").click()
    # Nothing is applied before the operator confirms the listed changes.
    expect(ui.by("confirm-dialog")).to_be_visible()
    expect(ui.by("confirm-dialog")).to_contain_text(f"allow: + {host}")
    _, _, unchanged = env.api("GET", f"/v1/sessions/{sid}")
    check(unchanged["policy"] == before["policy"], f"the policy changed before confirming: {unchanged['policy']}")
    ui.by("confirm-ok").click()
    expect(ui.by("policy-result")).to_contain_text("Applied", timeout=WAIT_MS)
    status, _, view = env.api("GET", f"/v1/sessions/{sid}")
    check(status == 200, f"GET /v1/sessions/{sid}: {status} {view}")
    check(allows(view["policy"], host), f"after applying, the policy does not allow {host}: {view['policy']}")
    # What the operator had set is not lowered by a suggestion drawn from the agent's traffic.
    for key in ("deny", "rate_limits"):
        check(all(x in view["policy"].get(key, []) for x in before["policy"].get(key, [])),
              f"applying dropped the session's {key}: before {before['policy']}, after {view['policy']}")
    check(view["policy"].get("pii") == before["policy"].get("pii", "off"),
          f"applying changed PII mode: before {before['policy']}, after {view['policy']}")
    expect(ui.by("current-policy")).to_contain_text(f'"{host}"')
    status = env.fetch(sid, tagged(env.policy_url, nonce()))
    check(status == "200", f"{env.policy_url} under {sid} after applying the suggestion: status {status}, expected 200")


def scenario_xss(ui):
    """Hostile URLs and labels show as text; nothing runs, nothing is injected."""
    env = ui.env
    tag = nonce()
    origin = urllib.parse.urlsplit(env.allowed)
    path = urllib.parse.quote(XSS_PATH, safe="/()&;")
    query = f"q={urllib.parse.quote(XSS_QUERY, safe='=()')}&sluice_ui={tag}"
    url = urllib.parse.urlunsplit((origin.scheme, origin.netloc, path, query, ""))
    status = env.fetch(env.session, url)
    print(f"  hostile URL: {status}")
    ui.live_filter(session=env.session, host=tag)
    row = ui.rows(tag).first
    expect(row).to_be_visible(timeout=WAIT_MS)
    record = env.record(env.session, tag)
    check("&lt;i&gt;" in record["url"], f"the recorded URL lost the entity canary: {record['url']}")
    expect(row.get_by_test_id("cell-url")).to_have_text(record["url"])
    row.click()
    expect(ui.by("detail-url")).to_have_text(record["url"])

    label = '<img src=x onerror=alert(1)><script>alert(2)</script>'
    status, _, created = env.api("POST", "/v1/sessions", {"ttl_seconds": 120, "labels": {"xss": label}})
    check(status == 201, f"POST /v1/sessions with a hostile label: {status} {created}")
    ui.nav("sessions")
    expect(ui.by("sessions-table")).to_contain_text(f"xss={label}", timeout=WAIT_MS)
    env.api("POST", f"/v1/sessions/{created['session']['id']}/revoke")

    for selector in ["img[onerror]", "img[src='x']", "script:not([src])", "[onerror]", "[onclick]"]:
        check(ui.page.locator(selector).count() == 0, f"the document has {selector}")
    ui.assert_clean()


def scenario_auth(ui):
    """Every endpoint the UI uses needs the token; /ui/ is served with the CSP."""
    env = ui.env
    sid = urllib.parse.quote(env.session)
    calls = [
        ("GET", "/v1/sessions", None), ("POST", "/v1/sessions", {}), ("GET", f"/v1/sessions/{sid}", None),
        ("POST", "/v1/sessions/ses_nosuchsession/revoke", None), ("GET", f"/v1/sessions/{sid}/env", None),
        ("GET", f"/v1/sessions/{sid}/policy/suggest", None), ("PUT", "/v1/sessions/ses_nosuchsession/policy", {}),
        ("GET", "/v1/sandboxes", None), ("GET", "/v1/audit", None), ("GET", "/v1/audit/stream", None),
        ("GET", "/v1/node", None), ("GET", "/v1/ca.pem", None), ("GET", "/metrics", None),
    ]
    for auth in [None, "Bearer not-the-token"]:
        for method, path, body in calls:
            status, _, answer = env.api(method, path, body, auth=auth)
            check(status == 401, f"{method} {path} with Authorization {auth!r}: {status}, expected 401 ({answer})")

    for name, kind in ASSETS.items():
        status, headers, _ = env.api("GET", f"/ui/{name}", auth=None)
        check(status == 200, f"GET /ui/{name}: {status}")
        check(kind in (headers.get("Content-Type") or ""), f"GET /ui/{name}: Content-Type {headers.get('Content-Type')!r}, expected {kind}")
    status, headers, _ = env.api("GET", "/v1/sessions")
    check(status == 200 and headers.get("X-Content-Type-Options") == "nosniff" and headers.get("Cache-Control") == "no-store",
          f"GET /v1/sessions: {status}, X-Content-Type-Options {headers.get('X-Content-Type-Options')!r}, Cache-Control {headers.get('Cache-Control')!r}")
    status, headers, _ = env.api("GET", "/ui/", auth=None)
    csp = headers.get("Content-Security-Policy") or ""
    check("script-src 'self'" in csp, f"GET /ui/: Content-Security-Policy {csp!r} lacks script-src 'self'")

    # A refused token sends the page back to the login form with a message.
    ui.tolerated.append("401")
    ui.page.evaluate("sessionStorage.setItem('sluice.admin-token', 'not-the-token')")
    ui.page.reload()
    expect(ui.by("login-message")).to_contain_text("refused", timeout=WAIT_MS)
    ui.tolerated.pop()


SCENARIOS = [
    ("live", scenario_live),
    ("session", scenario_session),
    ("policy", scenario_policy),
    ("xss", scenario_xss),
    ("auth", scenario_auth),
]


def main():
    env = Env()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(WAIT_MS)
        ui = Ui(page, env)
        for name, run in SCENARIOS:
            try:
                run(ui)
                ui.assert_clean()
            except (Failed, AssertionError, PlaywrightError, subprocess.SubprocessError) as e:
                text = str(e)
                if len(text) > 2000:  # Playwright appends the whole page's aria snapshot
                    text = text[:2000] + " […]"
                print(f"FAIL {name}: {text} (screenshot: fail-{name}.png)")
                try:
                    page.screenshot(path=os.path.join(env.shots, f"fail-{name}.png"), full_page=True)
                except PlaywrightError:
                    pass
                browser.close()
                return 1
            print(f"PASS {name}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
