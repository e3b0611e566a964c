"""
A stand-in for the Hugging Face hub on 127.0.0.1, for the download tests only: the hub cannot be reached from the
machines that run the suite. It serves repositories from local folders through the routes huggingface_hub uses
(model_info, auth_check, list_repo_tree, file HEAD/GET), answers a missing repository and a gated one the way the hub
does (status code + X-Error-Code), a renamed one with its new id, and records every file fetched.
"""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub:
    def __init__(self, repos, gated=(), renamed=None):
        self.repos = {name: Path(folder) for name, folder in repos.items()}  # id -> folder with its files
        self.gated, self.renamed = set(gated), dict(renamed or {})
        self.fetched = []  # (repo, path) of every file GET
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo):
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route(head=False)

            def _send(self, status, body=b"", headers=None, head=False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, obj):
                self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _repo(self, parts):
                repo = "/".join(parts[:2])
                if repo in hub.renamed:
                    return hub.renamed[repo], repo
                return repo, repo

            def _route(self, head):
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                api = parts[:2] == ["api", "models"]
                repo, asked = self._repo(parts[2:4] if api else parts[:2])
                if repo not in hub.repos:
                    return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"}, head)
                files = hub.files(repo)
                if api and parts[4:5] == ["auth-check"]:
                    if repo in hub.gated:
                        return self._send(403, b"{}", {"X-Error-Code": "GatedRepo"}, head)
                    return self._json({})
                if api and parts[4:5] == ["tree"]:
                    return self._json([{"type": "file", "path": f, "size": p.stat().st_size,
                                        "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for f, p in files.items()])
                if api:  # model_info, at a revision or not
                    return self._json({"id": repo, "sha": COMMIT, "gated": "manual" if repo in hub.gated else False,
                                       "siblings": [{"rfilename": f, "size": p.stat().st_size}
                                                    for f, p in files.items()]})
                path = "/".join(parts[4:])  # /{org}/{name}/resolve/{revision}/{path}
                if parts[2:3] != ["resolve"] or path not in files:
                    return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)
                body = files[path].read_bytes()
                if not head:
                    hub.fetched.append((asked, path))
                self._send(200, body, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'},
                           head)

        return Handler
