#!/usr/bin/env python3
"""A tiny webhook receiver for trying hookrelay: prints every request it gets and answers 204.

Usage: python3 tools/print-receiver.py [PORT]   (default 9000, listens on 127.0.0.1)
"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        print(f"--- {self.command} {self.path}", flush=True)
        for name, value in self.headers.items():
            print(f"{name}: {value}")
        print()
        print(body.decode("utf-8", "replace"), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}/", flush=True)
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
