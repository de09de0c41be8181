"""Starts the loopback OpenID Connect provider (this package) in a process of its own, for one redirect URI."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Provider:
    issuer: str

    def signed_in(self, email: str, *groups: str, name: str = "") -> requests.Session:
        """A browser session at the provider in which `email` (with `groups`) has signed in."""
        session = requests.Session()
        response = session.get(f"{self.issuer}/sign-in/", params={"email": email, "group": groups, "name": name})
        response.raise_for_status()
        return session

    def sign_in_url(self, email: str, *groups: str, name: str = "") -> str:
        return f"{self.issuer}/sign-in/?{urlencode({'email': email, 'group': groups, 'name': name}, doseq=True)}"


@contextmanager
def running_provider(directory: Path, redirect_uri: str):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.identity.oidc_provider", str(port), redirect_uri],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PROVIDER_DATABASE": str(directory / "provider.sqlite3"),
            "PYTHONPATH": str(ROOT),
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready", "the OIDC provider did not start"
        yield Provider(issuer=f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=10)
