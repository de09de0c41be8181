"""A small Slack Web API on 127.0.0.1 for the tests and the bench: the methods Steerco calls, answered in Slack's
JSON shapes (users.list paginated with cursors; form or JSON bodies, `ok`/`error`), every call recorded;
`rate_limit` makes the next calls answer 429 with Retry-After, as Slack does. It also serves /oauth/v2/authorize,
which sends the browser back with a code."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

TEAM = {"id": "T0ACME", "name": "Acme Slack"}
BOT_TOKEN = "xoxb-fake-bot-token"


@dataclass
class FakeSlack:
    team: dict = field(default_factory=lambda: dict(TEAM))
    users_by_email: dict[str, str] = field(default_factory=dict)  # email -> Slack user id
    calls: list[tuple[str, dict]] = field(default_factory=list)
    limited: int = 0  # how many calls still answer 429
    retry_after: int = 7
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))

    def rate_limit(self, calls: int = 1, retry_after: int = 7) -> None:
        self.limited, self.retry_after = calls, retry_after

    def called(self, method: str) -> list[dict]:
        with self.lock:
            return [params for name, params in self.calls if name == method]

    def answer(self, method: str, params: dict) -> tuple[int, dict]:
        with self.lock:
            self.calls.append((method, params))
            if self.limited:
                self.limited -= 1
                return 429, {"ok": False, "error": "ratelimited"}
            ts = f"1700000000.{next(self._ts):06d}"
        if method == "oauth.v2.access":
            if params.get("code") != "good-code":
                return 200, {"ok": False, "error": "invalid_code"}
            return 200, {
                "ok": True,
                "access_token": BOT_TOKEN,
                "token_type": "bot",
                "scope": "chat:write,im:write,users:read,users:read.email,commands",
                "bot_user_id": "UBOT",
                "app_id": "A0STEERCO",
                "team": self.team,
                "enterprise": None,
                "authed_user": {"id": "UADMIN"},
            }
        if method == "auth.test":
            return 200, {"ok": True, "team": self.team["name"], "team_id": self.team["id"], "user_id": "UBOT"}
        if method == "users.lookupByEmail":
            user_id = self.users_by_email.get(params.get("email", ""))
            if user_id is None:
                return 200, {"ok": False, "error": "users_not_found"}
            profile = {"email": params["email"], "real_name": params["email"].split("@")[0]}
            return 200, {"ok": True, "user": {"id": user_id, "team_id": self.team["id"], "profile": profile}}
        if method == "users.list":  # two pages when there are more than `limit` users, as Slack paginates
            everyone = [
                {"id": uid, "team_id": self.team["id"], "deleted": False, "is_bot": False, "profile": {"email": email}}
                for email, uid in self.users_by_email.items()
            ] + [{"id": "UBOT", "team_id": self.team["id"], "is_bot": True, "profile": {}}]
            start, limit = int(params.get("cursor") or 0), int(params.get("limit") or 200)
            following = str(start + limit) if start + limit < len(everyone) else ""
            metadata = {"next_cursor": following}
            return 200, {"ok": True, "members": everyone[start : start + limit], "response_metadata": metadata}
        if method == "conversations.open":
            return 200, {"ok": True, "channel": {"id": "D" + params.get("users", "")}}
        if method in ("chat.postMessage", "chat.update"):
            ts = params.get("ts", ts)
            message = {"type": "message", "text": params.get("text", ""), "ts": ts, "blocks": params.get("blocks")}
            return 200, {"ok": True, "channel": params.get("channel"), "ts": ts, "message": message}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": ts}
        if method == "views.open":
            return 200, {"ok": True, "view": {"id": "V1", **(params.get("view") or {})}}
        return 404, {"ok": False, "error": "unknown_method"}


def _handler(fake: FakeSlack):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parsed = urlparse(self.path)
            if parsed.path != "/oauth/v2/authorize":
                self.send_error(404)
                return
            query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            back = query["redirect_uri"] + "?" + urlencode({"code": "good-code", "state": query.get("state", "")})
            self.send_response(302)
            self.send_header("Location", back)
            self.end_headers()

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                params = json.loads(raw or "{}")
            else:
                params = {k: v[0] for k, v in parse_qs(raw).items()}
                for key in ("blocks", "view"):  # slack_sdk sends these JSON-encoded in a form
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
            params["_token"] = self.headers.get("Authorization", "")
            status, body = fake.answer(self.path.strip("/").split("/")[-1], params)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", str(fake.retry_after))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    return Handler


def serve() -> tuple[FakeSlack, ThreadingHTTPServer]:
    fake = FakeSlack()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    return fake, server
