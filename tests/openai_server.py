"""A small OpenAI-compatible chat server on loopback for tests, serving the tiny model through `POST
/v1/chat/completions`. `mode` switches its behaviour: "model" (generate with the tiny model), "scripted" (answer
`\\boxed{<expected>}` for every sample, for deterministic checks), "hang" (never answers in time), "malformed"
(invalid JSON). It counts requests and records the Authorization headers it saw."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, mode="model", model=None, tokenizer=None, scripted_answer="42"):
        self.mode, self.model, self.tokenizer, self.scripted_answer = mode, model, tokenizer, scripted_answer
        self.requests, self.auth_headers, self.messages = 0, [], []  # messages: each request's chat messages
        # the handler threads share one tokenizer, whose Rust backend raises "Already borrowed" when two threads
        # use it at once, and one model: generate one request at a time
        self.model_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests += 1
                server.auth_headers.append(self.headers.get("Authorization"))
                server.messages.append(body["messages"])
                if server.mode == "hang":
                    time.sleep(3.0)  # longer than the client's timeout in the tests; bounded so the test ends
                    return
                if server.mode == "malformed":
                    payload = b'{"choices": [ {"message": '
                else:
                    texts = server.complete(body["messages"], body.get("n", 1), body.get("max_tokens", 16))
                    payload = json.dumps({"object": "chat.completion", "model": body["model"], "choices": [
                        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)]}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def complete(self, messages, n, max_tokens):
        if self.mode == "scripted":
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
