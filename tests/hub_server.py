"""A Hugging Face Hub on loopback, serving real model files, for the download path's tests.

It answers the two requests ``snapshot_download`` makes: the repo's file list
and tree (``/api/models/<repo>/revision/<rev>``, ``.../tree/<rev>``) and each file
(``/<repo>/resolve/<rev>/<file>``).
"""

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "feedfacefeedfacefeedfacefeedfacefeedface"


@contextmanager
def serve(repos: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``{repo_id: folder}``; yield the endpoint URL and the list of requested paths."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _route(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            requested.append(path)
            for repo_id, folder in repos.items():
                if path.startswith(f"/api/models/{repo_id}/revision/"):
                    files = sorted(p.name for p in folder.iterdir())
                    data = json.dumps({"id": repo_id, "sha": COMMIT,
                                       "siblings": [{"rfilename": f} for f in files]}).encode()
                    return self._send(data, body, {"Content-Type": "application/json"})
                if path.startswith(f"/api/models/{repo_id}/tree/"):
                    tree = [{"type": "file", "path": p.name, "size": p.stat().st_size,
                             "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                            for p in sorted(folder.iterdir())]
                    return self._send(json.dumps(tree).encode(), body,
                                      {"Content-Type": "application/json"})
                prefix = f"/{repo_id}/resolve/"
                if path.startswith(prefix):
                    file = folder / path[len(prefix):].split("/", 1)[1]
                    if file.is_file():
                        data = file.read_bytes()
                        etag = hashlib.sha256(data).hexdigest()
                        return self._send(data, body, {"X-Repo-Commit": COMMIT,
                                                       "ETag": f'"{etag}"'})
            self.send_error(404)

        def _send(self, data: bytes, body: bool, headers: dict[str, str]) -> None:
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._route(body=True)

        def do_HEAD(self) -> None:
            self._route(body=False)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
