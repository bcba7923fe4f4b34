#!/usr/bin/env python3
"""Statusphere in plain Python, behind ioproxy: the standard library only.

This app has no AT Protocol code at all. ioproxy, in front of it, does the
sign-in (OAuth, PKCE, DPoP, tokens and their refresh); the app never sees a
token, a DPoP key or an OAuth redirect. What it gets instead are HTTP headers
on each request of a signed-in browser (README.md at the root lists them):

    User-Did       the account's DID: key your data on it
    User-Handle    its handle, checked both ways by ioproxy
    Proxy-Session  an opaque key that lets the calling port act for the user

and to reach the user's PDS it sends plain HTTP to ioproxy's calling port
(IOPROXY_CALL_URL) with User-Did and Proxy-Session, and ioproxy adds the
credentials. A request without these headers is from nobody: ioproxy strips
any that a client sent itself.

    PORT=3000 IOPROXY_CALL_URL=http://127.0.0.1:7000 python3 app.py
"""
import datetime
import html
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CALL_URL = os.environ.get("IOPROXY_CALL_URL", "http://127.0.0.1:7000").rstrip("/")
COLLECTION = "xyz.statusphere.status"
# The calling port is on loopback: never send it through an HTTP proxy from
# the environment (http_proxy), which would see the Proxy-Session header.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def xrpc(method, nsid, did, session=None, params=None, body=None):
    """One XRPC call to the user's PDS through the calling port.

    Returns (status, JSON answer). Errors, the PDS's or ioproxy's own, are
    XRPC-shaped: {"error": "AuthRequired", "message": "..."}.
    """
    url = f"{CALL_URL}/xrpc/{nsid}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    headers = {"User-Did": did}  # whose PDS to call
    if session:
        headers["Proxy-Session"] = session  # act as the user; without it, a public read
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, {"error": f"HTTP {err.code}", "message": err.reason}
    except (OSError, ValueError) as err:  # ioproxy not there, or not JSON
        return 502, {"error": "CallingPortUnreachable", "message": str(err)}


def esc(value):
    return html.escape(str(value), quote=True)


def page(body):
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Statusphere (Python)</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 36em; margin: 2em auto">
<h1>Statusphere (Python)</h1>
{body}
</body></html>"""


def home(did, handle, error=None):
    """The page: signed out, or the user's own (error: escaped already)."""
    if not did:
        return page('<p>You are not signed in.</p>\n'
                    '<p><a id="signin" href="/@/signin?redirect=/">Sign in with your AT Protocol account</a></p>')
    # listRecords is a public read: User-Did alone tells the calling port
    # whose PDS to ask, and the call goes without credentials.
    status, out = xrpc("GET", "com.atproto.repo.listRecords", did,
                       params={"repo": did, "collection": COLLECTION, "limit": 20})
    if status == 200:
        items = "".join(f'<li>{esc(r.get("value", {}).get("status", ""))} '
                        f'<small>{esc(r.get("value", {}).get("createdAt", ""))}</small></li>\n'
                        for r in out.get("records", []))
        listing = f'<ul id="statuses">\n{items}</ul>' if items else '<p id="empty">No status yet.</p>'
    else:
        listing = f'<p id="list-error">Could not read your statuses: {xrpc_error(status, out)}</p>'
    shown = f'<p id="error" role="alert">Could not post your status: {error}</p>' if error else ""
    return page(f"""<p>Signed in as <strong id="handle">{esc(handle)}</strong>
(<code id="did">{esc(did)}</code>)</p>
{shown}
<form id="status-form" method="post" action="/status">
  <label>Your status <input name="status" required maxlength="32" placeholder="🦋"></label>
  <button type="submit">Post</button>
</form>
<h2>Your statuses</h2>
{listing}
<form id="signout" method="post" action="/@/signout">
  <input type="hidden" name="redirect" value="/">
  <button type="submit">Sign out</button>
</form>""")


def xrpc_error(status, out):
    """An XRPC error body, escaped for a page: "AuthRequired: no session (401)"."""
    return esc(f'{out.get("error", "Error")}: {out.get("message", "")} ({status})')


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/":
            return self.send(404, page("<p>Not found.</p>"))
        self.send(200, home(self.headers.get("User-Did"), self.headers.get("User-Handle", "")))

    def do_POST(self):
        if self.path != "/status":
            return self.send(404, page("<p>Not found.</p>"))
        did, session = self.headers.get("User-Did"), self.headers.get("Proxy-Session")
        if not did or not session:
            return self.redirect("/@/signin?redirect=/")
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > 4096:
            return self.send(400, page("<p>The form could not be read.</p>"))
        form = urllib.parse.parse_qs(self.rfile.read(int(length)).decode("utf-8", "replace"))
        text = form.get("status", [""])[0].strip()
        # The Lexicon allows 1 to 32 bytes of UTF-8 (and one grapheme, which
        # the standard library cannot count: a plain emoji is one).
        if not 1 <= len(text.encode()) <= 32:
            return self.send(400, home(did, self.headers.get("User-Handle", ""),
                                       esc("a status is an emoji or a few characters (at most 32 bytes)")))
        record = {"$type": COLLECTION, "status": text,
                  "createdAt": datetime.datetime.now(datetime.timezone.utc)
                  .isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        # A write acts as the user: User-Did and Proxy-Session, as received.
        status, out = xrpc("POST", "com.atproto.repo.createRecord", did, session=session,
                           body={"repo": did, "collection": COLLECTION, "record": record})
        if status != 200:
            return self.send(status if status >= 400 else 502,
                             home(did, self.headers.get("User-Handle", ""), xrpc_error(status, out)))
        self.redirect("/")  # post, then redirect: a reload does not post twice

    def send(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # the page is one user's
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, to):
        self.send_response(303)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "3000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # 0: any free port
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
