#!/usr/bin/env python3
"""Push a model, deploy it, infer through a gateway: mlfleet's REST API from Python.

Standard library only (urllib, json, hashlib). The steps, as any HTTP client would take them:

  1. POST /api/v1/models/NAME/uploads      begin an upload: {uploadId, uploadUrl, offset}
  2. PUT  uploadUrl (Upload-Offset: N)     the bytes from N (a resumed upload starts past 0)
  3. POST /api/v1/models/NAME/versions     commit it: the new version
  4. POST /api/v1/deployments              the deployment, as `mlfleetctl apply` takes it, in JSON
  5. GET  /api/v1/deployments/NAME         until every replica is ready
  6. POST http://GATEWAY/v2/models/NAME/infer   Open Inference Protocol v2, on an agent's gateway

    python3 mlfleet_example.py --api http://127.0.0.1:7701 --gateway 127.0.0.1:7780 \\
        --token "$MLFLEET_TOKEN" --model linear --file linear.onnx \\
        --input '[{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]'

The output tensors are printed as JSON on stdout; progress goes to stderr. Errors from the API
are {"error": {"code", "message"}} with the HTTP status of their code (a gateway's are
{"error": "..."}); they end the script with exit 1 and the message.
"""
import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.code = code


class Fleet:
    """The few REST calls the example needs, with the bearer token on each."""

    def __init__(self, api, token):
        self.api = api.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, raw=None, headers=None, url=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(url or self.api + path, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if raw is not None:
            request.add_header("Content-Type", "application/octet-stream")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                error = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                error = text.strip() or err.reason
            # The REST API says {"error": {"code", "message"}}; a gateway {"error": "..."}.
            if isinstance(error, dict):
                raise ApiError(err.code, error.get("code", ""), error.get("message", text)) from None
            raise ApiError(err.code, "", str(error)) from None

    def push_model(self, name, path, fmt):
        with open(path, "rb") as f:
            content = f.read()
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        ticket = self.call("POST", f"/api/v1/models/{name}/uploads", {"format": fmt, "sizeBytes": len(content), "digest": digest})
        offset = int(ticket.get("offset", 0))
        if offset < len(content):
            self.call("PUT", "", raw=content[offset:], headers={"Upload-Offset": str(offset)}, url=ticket["uploadUrl"])
        return self.call("POST", f"/api/v1/models/{name}/versions", {"upload": ticket["uploadId"]})

    def wait_ready(self, name, timeout_s):
        deadline = time.monotonic() + timeout_s
        while True:
            deployment = self.call("GET", f"/api/v1/deployments/{name}")
            if deployment["status"] == "available" and deployment["readyReplicas"] >= deployment["replicas"]:
                return deployment
            if time.monotonic() > deadline:
                raise ApiError(504, "DEADLINE_EXCEEDED", f"deployment {name} is not ready after {timeout_s}s: {deployment['status']} {deployment.get('message', '')}")
            time.sleep(0.5)

    def infer(self, gateway, name, inputs, timeout_s=30):
        """The gateway learns new replicas within moments of their being ready: 404/503 are retried briefly."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.call("POST", "", {"inputs": inputs}, url=f"http://{gateway}/v2/models/{name}/infer")
            except ApiError as err:
                if err.status not in (404, 503) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", default=os.environ.get("MLFLEET_API", "http://127.0.0.1:7701"), help="the coordinator's HTTP address")
    parser.add_argument("--gateway", default=os.environ.get("MLFLEET_GATEWAY", "127.0.0.1:7780"), help="an agent's inference gateway, host:port")
    parser.add_argument("--token", default=os.environ.get("MLFLEET_TOKEN"), help="an API token (default: $MLFLEET_TOKEN)")
    parser.add_argument("--model", required=True, help="the model (and deployment) name")
    parser.add_argument("--file", required=True, help="the model file to push")
    parser.add_argument("--format", default="onnx")
    parser.add_argument("--input", required=True, help="the input tensors, as OIP v2 JSON (a list)")
    parser.add_argument("--stack", default="onnx", help="the stack the deployment runs on")
    parser.add_argument("--image", help="an image instead of a stack")
    parser.add_argument("--command", help="the server's command, as a JSON list (with --image, or a process-driver host)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the deployment")
    args = parser.parse_args()

    fleet = Fleet(args.api, args.token)
    try:
        version = fleet.push_model(args.model, args.file, args.format)
        print(f"pushed {version['name']}:{version['version']} ({version['digest']})", file=sys.stderr)

        spec = {"model": f"{args.model}:{version['version']}", "replicas": 1}
        if args.image:
            spec["image"] = args.image
        else:
            spec["stack"] = args.stack
        if args.command:
            spec["command"] = json.loads(args.command)
        if args.env:
            spec["env"] = dict(item.split("=", 1) for item in args.env)
        fleet.call("POST", "/api/v1/deployments", {"name": args.model, "spec": spec})
        deployment = fleet.wait_ready(args.model, args.timeout)
        print(f"deployment {args.model} ready: {deployment['readyReplicas']}/{deployment['replicas']} replicas", file=sys.stderr)

        answer = fleet.infer(args.gateway, args.model, json.loads(args.input))
        print(json.dumps({"model": answer["model_name"], "version": answer.get("model_version"), "outputs": answer["outputs"]}))
    except ApiError as err:
        print(f"mlfleet_example: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
