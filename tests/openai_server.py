"""A small OpenAI-compatible chat server on loopback for tests, serving the tiny model through `POST
/v1/chat/completions`. `mode` switches its behaviour:

- "model": generate with the tiny model; "scripted": answer `\\boxed{<expected>}` for every sample (deterministic);
- "hang": never answers in time; "malformed": invalid JSON;
- "redirect": answer `redirect_code` to `redirect_to`;
- "short": announce a longer body than it sends, then close (the client's `http.client.IncompleteRead`);
- "disconnect": close without answering (`RemoteDisconnected`); "reset": abort the connection (a TCP reset);
- "drip_headers" / "drip_body": send the response a byte every `drip_interval` seconds, from its first byte or from
  its body's, for `drip_bytes` bytes, then the rest at once;
- "echo_key": answer 401 with the Authorization header in its reason phrase (a server that leaks it back).

A faulty mode applies to the requests whose last message contains `fault_only` (all when None), and to each such
conversation's first `fault_times` requests (all when None); the others get the scripted answer. The server counts
requests (GET too: a redirected POST may arrive as one), records their Authorization headers, under a lock."""

import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, mode="model", model=None, tokenizer=None, scripted_answer="42", redirect_to=None,
                 redirect_code=302, fault_only=None, fault_times=None, drip_interval=0.3, drip_bytes=25):  # fmt: skip
        self.mode, self.model, self.tokenizer, self.scripted_answer = mode, model, tokenizer, scripted_answer
        self.redirect_to, self.redirect_code = redirect_to, redirect_code
        self.fault_only, self.fault_times = fault_only, fault_times
        self.drip_interval, self.drip_bytes = drip_interval, drip_bytes
        self.requests, self.auth_headers, self.messages = 0, [], []  # messages: each request's chat messages
        self.seen = Counter()  # requests per conversation (its last message)
        self.lock = threading.Lock()  # the handler threads update the counts above concurrently
        # the handler threads share one tokenizer, whose Rust backend raises "Already borrowed" when two threads
        # use it at once, and one model: generate one request at a time
        self.model_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # a POST redirected with 301-303 comes back as a GET, without its body
                server.record(self.headers, None)
                self.answer(405, b"{}")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                faulty = server.record(self.headers, body["messages"])
                mode = server.mode if faulty else "scripted"
                if mode == "hang":
                    time.sleep(3.0)  # longer than the client's timeout in the tests; bounded so the test ends
                    return
                if mode == "redirect":
                    self.send_response(server.redirect_code)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode in ("disconnect", "reset"):
                    if mode == "reset":  # linger 0: close sends a TCP reset, not an orderly end
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if mode == "echo_key":
                    self.send_response(401, f"Unauthorized: {self.headers.get('Authorization')}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "malformed":
                    payload = b'{"choices": [ {"message": '
                else:
                    texts = server.complete(body["messages"], body.get("n", 1), body.get("max_tokens", 16))
                    payload = json.dumps({"object": "chat.completion", "model": body["model"], "choices": [
                        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)]}).encode()  # fmt: skip
                if mode == "short":
                    self.answer(200, payload[: len(payload) // 2], length=len(payload))
                    self.close_connection = True
                elif mode in ("drip_headers", "drip_body"):
                    self.drip(payload, from_body=mode == "drip_body")
                else:
                    self.answer(200, payload)

            def answer(self, code, payload, length=None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload) if length is None else length))
                self.end_headers()
                self.wfile.write(payload)

            def drip(self, payload, from_body):
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                        "Connection: close\r\n\r\n").encode()  # fmt: skip
                data, start = head + payload, len(head) if from_body else 0
                self.close_connection = True
                try:
                    self.wfile.write(data[:start])
                    for i in range(start, min(start + server.drip_bytes, len(data))):
                        self.wfile.write(data[i : i + 1])
                        time.sleep(server.drip_interval)
                    self.wfile.write(data[start + server.drip_bytes :])
                except OSError:  # the client gave up: the test's point
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # an aborted connection is a tested case, not news
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def record(self, headers, messages) -> bool:
        """Count a request; whether the faulty mode applies to it (`fault_only`, `fault_times`)."""
        key = messages[-1]["content"] if messages else None
        with self.lock:
            self.requests += 1
            self.auth_headers.append(headers.get("Authorization"))
            if messages is not None:
                self.messages.append(messages)
            self.seen[key] += 1
            seen = self.seen[key]
        matches = self.fault_only is None or (key is not None and self.fault_only in key)
        return matches and (self.fault_times is None or seen <= self.fault_times)

    def complete(self, messages, n, max_tokens):
        if self.mode != "model":
            return [f"Worked out. The answer is \\boxed{{{self.scripted_answer}}}."] * n
        import torch

        tok = self.tokenizer
        with self.model_lock, torch.no_grad():
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            out = self.model.generate(**ids, do_sample=True, max_new_tokens=min(max_tokens, 16),
                                      num_return_sequences=n, pad_token_id=tok.pad_token_id)  # fmt: skip
            return tok.batch_decode(out[:, ids["input_ids"].shape[1] :], skip_special_tokens=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
