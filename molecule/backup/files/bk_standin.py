#!/usr/bin/python3
"""A stand-in for an app, for the backup scenario only: answers GET /health with 200 when it can log
in to its database with the password from its configuration file (EnvironmentFile) and read its
tables, and when its media directory holds files; 503 otherwise. Never used outside tests."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg2


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/health":
            self.send_error(404)
            return
        try:
            conn = psycopg2.connect(
                host="127.0.0.1",
                dbname=os.environ["BK_DB_NAME"],
                user=os.environ["BK_DB_USER"],
                password=os.environ["BK_DB_PASSWORD"],
                connect_timeout=3,
            )
            with conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM statuses)"
                )
                accounts, statuses = cur.fetchone()
            conn.close()
            media = sum(len(files) for _, _, files in os.walk(os.environ["BK_MEDIA_DIR"]))
            body = {"ok": media > 0, "accounts": accounts, "statuses": statuses, "media": media}
        except Exception as exc:  # any failure is "unhealthy"
            body = {"ok": False, "error": type(exc).__name__}
        data = json.dumps(body).encode()
        self.send_response(200 if body["ok"] else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


HTTPServer(("127.0.0.1", int(os.environ.get("BK_PORT", "3987"))), Health).serve_forever()
