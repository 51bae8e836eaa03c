"""The peers, each in the benchmark's own environment under bench/out/ (never the project's):
MLflow's `mlflow models serve` and Seldon's MLServer with its scikit-learn runtime.

Each venv is created on first use with the project's exact scikit-learn, pandas, numpy,
scipy and skops, plus gitml itself without dependencies (the pipeline holds gitml's
CategoryEncoder), and the model is exported inside it from the same skops file gitml serves.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from serving.env import OUT_DIR, ROOT, bench_env, free_port, progress, run_checked
from serving.models import Model
from serving.servers import ServerSpec
from serving.wire import mlflow_route, mlserver_route

MLFLOW_REQUIREMENTS = ["mlflow==3.17.2"]
# 1.7.1's parallel workers do not start with uvloop 0.23 (SeldonIO/MLServer#2286)
MLSERVER_REQUIREMENTS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]
# Each peer's venv gets the project's exact versions of what touches the model.
PINNED = ["scikit-learn", "pandas", "numpy", "scipy", "skops"]

# MLServer configurations: server-wide settings, then the model's own.
MLSERVER_CONFIGS: dict[str, tuple[str, dict[str, object], dict[str, object]]] = {
    "mlserver-pw0": ("MLServer, parallel_workers 0", {"parallel_workers": 0}, {}),
    "mlserver-pw1": ("MLServer, 1 parallel worker (default)", {"parallel_workers": 1}, {}),
    "mlserver-batch": (
        "MLServer, adaptive batching",
        {"parallel_workers": 0},
        {"max_batch_size": 8, "max_batch_time": 0.005},
    ),
}


def ensure_venv(venv: Path, requirements: list[str]) -> Path:
    """Create a peer's venv on first use (or when its requirements change); its bin dir."""
    from importlib import metadata

    bin_dir = venv / "bin"
    stamp = venv / ".bench-installed"
    pins = [f"{name}=={metadata.version(name)}" for name in PINNED]
    wanted = " ".join([*requirements, *pins])
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return bin_dir
    progress(f"creating {venv} ({wanted}); once, 1-3 minutes")
    if not (bin_dir / "python").exists():
        run_checked([sys.executable, "-m", "venv", str(venv)])
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    pip.append("--disable-pip-version-check")
    run_checked([*pip, *requirements, *pins])
    run_checked([*pip, "--no-deps", "-e", str(ROOT)])
    stamp.write_text(wanted + "\n")
    return bin_dir


def peer_version(bin_dir: Path, module: str) -> str:
    code = f"import {module}; print({module}.__version__)"
    return run_checked([str(bin_dir / "python"), "-c", code], env=bench_env(bin_dir)).strip()


# --- MLflow ---------------------------------------------------------------------------------------


def export_mlflow_model(bin_dir: Path, model: Model) -> Path:
    """The same model file, saved as an MLflow model by bench/mlflow_export.py."""
    out = OUT_DIR / f"mlflow-model-{model.key}"
    sample = model.project / "data" / "processed" / "test.parquet"
    script = ROOT / "bench" / "mlflow_export.py"
    features = ",".join(model.features)
    cmd = [str(bin_dir / "python"), str(script), str(model.path), str(sample), str(out)]
    run_checked([*cmd, "--features", features], env=bench_env(bin_dir))
    return out


def mlflow_spec(bin_dir: Path, model_dir: Path, workers: int, *, access_log: bool) -> ServerSpec:
    env = bench_env(bin_dir)
    if not access_log:
        # gitml serve logs no requests unless --access-log; MLflow's uvicorn logs each one.
        # uvicorn reads UVICORN_* settings from the environment: both do the same work.
        env["UVICORN_ACCESS_LOG"] = "false"
    mlflow = str(bin_dir / "mlflow")

    def command(port: int) -> list[str]:
        return [
            *(mlflow, "models", "serve", "-m", str(model_dir), "--env-manager", "local"),
            *("-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)),
        ]

    return ServerSpec(
        name=f"mlflow-w{workers}",
        label="MLflow",
        kind="mlflow",
        workers=workers,
        command=command,
        env=env,
        ready_path="/ping",
        routes={"invocations": mlflow_route()},
    )


# --- MLServer -------------------------------------------------------------------------------------


def export_mlserver_model(bin_dir: Path, model: Model) -> Path:
    """The skops file re-saved with joblib inside MLServer's venv (bench/mlserver_export.py)."""
    out = OUT_DIR / "mlserver-models" / f"{model.key}.joblib"
    script = ROOT / "bench" / "mlserver_export.py"
    run_checked(
        [str(bin_dir / "python"), str(script), str(model.path), str(out)],
        env=bench_env(bin_dir),
    )
    return out


def mlserver_spec(bin_dir: Path, joblib_file: Path, model: Model, config: str) -> ServerSpec:
    """`mlserver start DIR`: DIR holds settings.json (ports, workers) and one model folder
    (model-settings.json: the scikit-learn runtime, the joblib file, batching)."""
    label, server_settings, model_settings = MLSERVER_CONFIGS[config]
    repo = OUT_DIR / "mlserver-repos" / f"{model.key}-{config}"

    def prepare(port: int) -> None:
        if repo.exists():
            shutil.rmtree(repo)
        folder = repo / model.name
        folder.mkdir(parents=True)
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "debug": False,  # no access log, as gitml serves by default
            **server_settings,
        }
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        shutil.copyfile(joblib_file, folder / "model.joblib")
        spec = {
            "name": model.name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
            **model_settings,
        }
        (folder / "model-settings.json").write_text(json.dumps(spec, indent=2))

    return ServerSpec(
        name=f"{model.key}-{config}",
        label=label,
        kind="mlserver",
        workers=1,
        command=lambda port: [str(bin_dir / "mlserver"), "start", str(repo)],
        env=bench_env(bin_dir),
        ready_path=f"/v2/models/{model.name}/ready",
        routes={"v2": mlserver_route(model)},
        prepare=prepare,
        cwd=OUT_DIR,
    )
