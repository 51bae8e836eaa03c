"""Benchmark local explanations: p50 and p99 of a one-row `POST /v1/predict`, plain and with
`?explain=true`, in the same run, for a linear and tree models; the target is explain <= 5x
plain.

Usage, from the project root with the project venv first on PATH and a trained model
(`make repro`):

    python bench/explain.py                      # logistic regression, HGB and random forest
    python bench/explain.py --requests 500       # a quicker run
    python bench/explain.py --models logistic_regression,hist_gradient_boosting

The reference model (models/, logistic regression) is served as it is. The tree models are
fitted on the project's training split with `conf/model/<name>.yaml`, exactly as the train
stage fits them, into bench/out/explain/<name>/ (git-ignored); nothing in the checkout
changes. Each model gets one `gitml serve` on 127.0.0.1; one client on a keep-alive
connection sends one-row requests from the test split, plain and explained alternately (so
both see the same machine), after a warm-up. Every explained answer is checked: its
contributions sum to value - baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "explain"
MODELS = ("logistic_regression", "hist_gradient_boosting", "random_forest")
TARGET = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--requests", type=int, default=2000, help="per kind, after warm-up")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    records = _records(200)
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        model = _model_dir(name)
        with _server(model) as url:
            rows.append((name, _measure(url, records, args.requests, args.warmup)))
    print(f"\n1-row POST /v1/predict, {args.requests} requests of each kind, interleaved\n")
    print("| model | plain p50 | plain p99 | explain p50 | explain p99 | p50 ratio | p99 ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for name, m in rows:
        r50, r99 = m["explain"]["p50"] / m["plain"]["p50"], m["explain"]["p99"] / m["plain"]["p99"]
        worst = max(worst, r50, r99)
        print(
            f"| {name} | {m['plain']['p50']:.2f} ms | {m['plain']['p99']:.2f} ms | "
            f"{m['explain']['p50']:.2f} ms | {m['explain']['p99']:.2f} ms | "
            f"{r50:.2f}x | {r99:.2f}x |"
        )
    verdict = "met" if worst <= TARGET else "MISSED"
    print(f"\ntarget explain <= {TARGET:g}x plain (p50 and p99): {verdict} (worst {worst:.2f}x)")
    return 0 if worst <= TARGET else 1


def _records(n: int) -> list[dict[str, Any]]:
    """One-row request records: the first `n` rows of the test split, by signature names."""
    import pandas as pd

    signature = json.loads((ROOT / "models" / "signature.json").read_text())
    names = [i["name"] for i in signature["inputs"]]
    frame = pd.read_parquet(ROOT / "data" / "processed" / "test.parquet", columns=names)
    out = []
    for row in frame.head(n).to_dict(orient="records"):
        out.append({k: (None if v != v else v) for k, v in row.items()})  # NaN -> null
    return json.loads(json.dumps(out, default=lambda v: v.item()))


def _model_dir(name: str) -> Path:
    """The reference model's directory, or a tree model fitted by the train stage itself."""
    from gitml.config.compose import compose_params, parse_params
    from gitml.stages import train

    composed = compose_params(ROOT / "conf", [f"model={name}"])
    params = parse_params(composed, source=name)
    committed = parse_params((ROOT / "params.yaml").read_text(), source="params.yaml")
    if params.model == committed.model:
        return ROOT / "models"
    target = OUT / name
    if (target / "model.skops").is_file():
        return target
    print(f"fitting {name} on the training split -> {target}", file=sys.stderr)
    target.mkdir(parents=True, exist_ok=True)
    (target / "params.yaml").write_text(composed)
    code = train.main(
        [
            "--params", str(target / "params.yaml"),
            "--train", str(ROOT / "data" / "processed" / "train.parquet"),
            "--model", str(target / "model.skops"),
            "--signature", str(target / "signature.json"),
            "--metadata", str(target / "metadata.json"),
        ]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"training {name} failed (exit {code})")
    return target


class _server:
    """`gitml serve --model DIR/model.skops` on a free port of 127.0.0.1, until exit."""

    def __init__(self, model: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.model = model

    def __enter__(self) -> str:
        OUT.mkdir(parents=True, exist_ok=True)
        log = (OUT / f"serve-{self.model.name}.log").open("w")
        cmd = [
            "gitml", "serve", "--model", str(self.model / "model.skops"),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gitml serve exited ({self.proc.returncode}); see {log.name}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("gitml serve did not become ready in 120 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _measure(url: str, records: list[dict[str, Any]], requests: int, warmup: int) -> dict:
    import httpx
    import numpy as np

    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    times: dict[str, list[float]] = {"plain": [], "explain": []}
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(warmup + requests):
            body = bodies[i % len(bodies)]
            for kind, path in (("plain", "/v1/predict"), ("explain", "/v1/predict?explain=true")):
                started = time.perf_counter()
                resp = client.post(path, content=body, headers=headers)
                elapsed = time.perf_counter() - started
                if resp.status_code != 200:
                    raise SystemExit(f"{path}: {resp.status_code} {resp.text[:300]}")
                if i >= warmup:
                    times[kind].append(elapsed * 1000)
                if kind == "explain" and i < len(bodies):
                    _check(resp.json()["predictions"][0]["explanation"])
    return {
        kind: {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99))}
        for kind, t in times.items()
    }


def _check(explanation: dict[str, Any]) -> None:
    parts = explanation.get("classes") or {"": explanation}
    for part in parts.values():
        total = part["baseline"] + sum(part["contributions"].values())
        if abs(total - part["value"]) > 1e-9:
            raise SystemExit(f"explanation does not add up: {total} != {part['value']}")


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    sys.exit(main())
