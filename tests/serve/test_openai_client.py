#!/usr/bin/env python3
"""mosaic serve, driven by OpenAI's Python client on the shipped model (CPU backend, loopback).

Completions, chat, streaming, 16 concurrent clients whose answers equal each one run alone, a
client that leaves mid-stream, OpenAI-style errors (bad JSON, unknown model, negative
temperature, max_tokens past the memory budget, a wrong API key, a full queue) after which the
server keeps serving, /metrics, and SIGTERM finishing an admitted request before the exit.

    python3 tests/serve/test_openai_client.py --mosaic build/bin/mosaic
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

import openai

MOSAIC = "build/bin/mosaic"
# One thread per mosaic process: ctest runs tests side by side, and OpenMP threads of two
# processes spinning on the same cores slow both many times over.
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
       "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}


class Server:
    """A `mosaic serve` on a free port; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen([MOSAIC, "serve", "--backend", "cpu", "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        line = self.proc.stdout.readline()
        m = re.search(r"http://[\d.]+:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"mosaic serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = f"http://127.0.0.1:{m.group(1)}"

    def client(self, key="unused"):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=300)

    def raw(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text) of one request, errors included."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def metric(self, name):
        _, text = self.raw("GET", "/metrics")
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


PROMPTS = ["Once upon a time", "In the beginning", "The king said", "And it came to pass",
           "Blessed are", "The LORD is my", "Hear, O Israel", "Let us go",
           "He answered", "Now the serpent", "Behold, I send", "For God so",
           "In those days", "Then Jesus said", "The earth was", "Praise ye"]


class OpenAiClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A budget small enough that a very long request does not fit, large enough for the rest.
        cls.server = Server("--memory-budget", "512MiB", "--max-batch", "8", "--queue", "32")
        cls.client = cls.server.client()
        cls.model = cls.client.models.list().data[0].id

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, f"the server exited with {code}"

    def complete(self, prompt, **kw):
        return self.client.completions.create(model=self.model, prompt=prompt, **kw)

    def test_models_and_health(self):
        self.assertEqual(self.model, "mosaic-tiny")
        self.assertEqual(self.server.raw("GET", "/health"), (200, {"status": "ok"}))

    def test_completion(self):
        r = self.complete("Once upon a time", max_tokens=32)
        self.assertEqual(r.object, "text_completion")
        self.assertTrue(r.choices[0].text.strip())
        self.assertIn(r.choices[0].finish_reason, ("length", "stop"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertLessEqual(r.usage.completion_tokens, 32)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_chat(self):
        r = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": "Tell me about Moses"}], max_tokens=32)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertTrue(r.choices[0].message.content)

    def test_stream_equals_whole(self):
        whole = self.complete("In the beginning", max_tokens=64).choices[0].text
        chunks = list(self.complete("In the beginning", max_tokens=64, stream=True,
                                    stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertGreater(sum(1 for c in chunks if c.choices and c.choices[0].text), 1, "one chunk is not a stream")
        self.assertEqual(text, whole)
        self.assertIn(chunks[-2].choices[0].finish_reason, ("length", "stop"))
        self.assertEqual(chunks[-1].choices, [])
        self.assertGreater(chunks[-1].usage.completion_tokens, 0)
        # On the wire, the chunks before the usage chunk say "usage": null (as OpenAI's do).
        status, sse = self.server.raw("POST", "/v1/completions", json.dumps(
            {"prompt": "In the beginning", "max_tokens": 16, "stream": True,
             "stream_options": {"include_usage": True}}), {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        events = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: {")]
        self.assertGreater(len(events), 2)
        self.assertTrue(all("usage" in e and e["usage"] is None for e in events[:-1]), events)
        self.assertGreater(events[-1]["usage"]["completion_tokens"], 0)
        chat = list(self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=16, stream=True))
        self.assertEqual(chat[0].choices[0].delta.role, "assistant")
        self.assertIsNotNone(chat[-1].choices[0].finish_reason)

    def test_stop_string(self):
        whole = self.complete("The king said", max_tokens=64).choices[0].text
        words = whole.split()
        self.assertGreater(len(words), 3)
        stop = words[2]
        r = self.complete("The king said", max_tokens=64, stop=[stop])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].text, whole[:whole.find(stop)])

    def test_sixteen_concurrent_clients_equal_alone(self):
        # Each request's answer alone, one at a time; then all 16 at once (greedy, two cache modes).
        settings = [dict(max_tokens=32), dict(max_tokens=32, extra_body={"cache": "dual"})]
        jobs = [(p, settings[i % 2]) for i, p in enumerate(PROMPTS)]
        alone = [self.complete(p, **kw).choices[0].text for p, kw in jobs]
        together = [None] * len(jobs)

        def run(i):
            together[i] = self.server.client().completions.create(model=self.model, prompt=jobs[i][0],
                                                                  **jobs[i][1]).choices[0].text
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(together, alone)

    def test_disconnect_mid_stream_frees_the_slot(self):
        body = json.dumps({"model": self.model, "prompt": "Let us go", "max_tokens": 1024, "stream": True})
        port = int(self.server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
            self.assertIn(b"data: ", s.recv(4096) + s.recv(4096))
        t0 = time.time()
        while self.server.metric("mosaic_active_sequences") != 0:
            self.assertLess(time.time() - t0, 30, "the generation kept running after its client left")
            time.sleep(0.1)
        self.assertTrue(self.complete("He answered", max_tokens=8).choices[0].text)

    def test_errors_and_the_server_keeps_serving(self):
        status, body = self.server.raw("POST", "/v1/completions", "{not json",
                                       {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.completions.create(model="gpt-4", prompt="x", max_tokens=4)
        self.assertEqual(e.exception.body["code"], "model_not_found")
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete("x", max_tokens=4, temperature=-0.5)
        self.assertEqual(e.exception.body["param"], "temperature")
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete("x", max_tokens=1_000_000)
        self.assertRegex(e.exception.body["message"], r"does not fit .* fits is \d+ tokens")
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete("x", max_tokens=0)
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete("x", max_tokens=8, extra_body={"block_length": 3})
        self.assertIn("block_length", e.exception.body["message"])
        status, body = self.server.raw("GET", "/v1/nowhere")
        self.assertEqual(status, 404)
        # Bytes that are not UTF-8, in a path and in a body, once aborted the server.
        status, body = self.server.raw("GET", "/%ff%fe")
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))
        status, body = self.server.raw("POST", "/v1/completions", b'{"prompt": "ab\xff\xfe", "max_tokens": 4}')
        self.assertEqual((status, body["error"]["type"]), (400, "invalid_request_error"))
        self.assertTrue(self.complete("Praise ye", max_tokens=8).choices[0].text)

    def test_metrics(self):
        self.complete("Blessed are", max_tokens=16)
        _, text = self.server.raw("GET", "/metrics")
        self.assertRegex(text, r'mosaic_requests_total\{endpoint="/v1/completions",status="200"\} [1-9]')
        self.assertGreater(self.server.metric("mosaic_step_seconds_count"), 0)
        self.assertGreater(self.server.metric("mosaic_generated_tokens_total"), 0)
        self.assertGreater(self.server.metric("mosaic_weight_bytes"), 0)
        self.assertIsNotNone(self.server.metric("mosaic_queue_depth"))


class ServerSettingsTest(unittest.TestCase):
    def test_api_key(self):
        s = Server("--api-key", "sekret")
        try:
            with self.assertRaises(openai.AuthenticationError):
                s.client("wrong").completions.create(model="mosaic-tiny", prompt="x", max_tokens=4)
            self.assertTrue(s.client("sekret").completions.create(model="mosaic-tiny", prompt="x",
                                                                  max_tokens=4).choices[0].text is not None)
            self.assertEqual(s.raw("GET", "/health")[0], 200)
        finally:
            self.assertEqual(s.stop(), 0)

    def test_full_queue_answers_429(self):
        s = Server("--max-batch", "1", "--queue", "0")
        try:
            long = threading.Thread(target=lambda: s.client().completions.create(
                model="mosaic-tiny", prompt="Once", max_tokens=512))
            long.start()
            t0 = time.time()
            while s.metric("mosaic_active_sequences") != 1:
                self.assertLess(time.time() - t0, 30)
                time.sleep(0.05)
            with self.assertRaises(openai.RateLimitError):
                s.client().completions.create(model="mosaic-tiny", prompt="x", max_tokens=4)
            long.join()
            self.assertTrue(s.client().completions.create(model="mosaic-tiny", prompt="x", max_tokens=4))
        finally:
            self.assertEqual(s.stop(), 0)

    def test_sigterm_finishes_the_admitted_request(self):
        s = Server()
        result = {}

        def run():
            result["r"] = s.client().completions.create(model="mosaic-tiny", prompt="Once", max_tokens=256)
        t = threading.Thread(target=run)
        t.start()
        t0 = time.time()
        while s.metric("mosaic_active_sequences") != 1:
            self.assertLess(time.time() - t0, 30)
            time.sleep(0.05)
        s.proc.send_signal(signal.SIGTERM)
        t.join()
        self.assertEqual(s.proc.wait(60), 0)
        self.assertEqual(result["r"].usage.completion_tokens, 256)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mosaic", default=MOSAIC)
    args, rest = ap.parse_known_args()
    MOSAIC = args.mosaic
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
