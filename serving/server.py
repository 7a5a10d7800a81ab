"""`python -m serving RUN_DIR` (or `python -m trainer serve RUN_DIR`): load a run and the
warehouse's snapshot, serve them with uvicorn.

Only safetensors, JSON and Parquet are read from the run directory (`load_run`); nothing there is
imported or unpickled. The snapshot is read once at start-up and held in memory, indexed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from m2ctr.argtypes import port, positive
from m2ctr.warehouse import schema_name, warehouse_dir
from trainer.table import TrainerError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_TOKEN_ENV = "M2CTR_SERVE_TOKEN"
DEFAULT_MAX_CANDIDATES = 1000
DEFAULT_MAX_BODY_BYTES = 4 << 20
DEFAULT_MAX_TEXTS = 200_000


def default_warehouse() -> str:
    return str(warehouse_dir())


def default_schema() -> str:
    return schema_name()


RUNTIMES = ("torch", "onnx")


def onnx_graph(run_dir: Path, onnx_dir: str | Path | None) -> Path:
    """The exported graph to serve: `onnx_dir` when given, else the run exported now into a temporary
    directory that lives as long as the process."""
    import atexit
    import shutil
    import tempfile

    from trainer.export import export

    if onnx_dir is not None:
        return Path(onnx_dir)
    tmp = Path(tempfile.mkdtemp(prefix="m2ctr-onnx-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return export(run_dir, tmp / "graph")


def load_scorer(run_dir: str | Path, warehouse_dir: str | Path | None = None, *, schema: str | None = None,
                threads: int | None = None, runtime: str = "torch", onnx_dir: str | Path | None = None,
                max_texts: int = DEFAULT_MAX_TEXTS):
    """The run and the snapshot, loaded; the model warmed up by one request. With runtime "onnx" the
    run's exported graph scores through onnxruntime (`onnx_dir`, else exported at start-up)."""
    if runtime not in RUNTIMES:
        raise TrainerError(f"unknown runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
    import torch

    from m2ctr.schema import ITEM_TEXT_COLUMNS, USER_TEXT_COLUMNS
    from trainer.scoring import load_run

    from .payload import Item, User
    from .scorer import Scorer
    from .snapshot import Snapshot

    try:
        run = load_run(Path(run_dir))
    except (RuntimeError, KeyError, TypeError) as e:  # weights or config of another model version
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainerError(f"cannot load the run {run_dir} with this version of the trainer: {first}") from None
    if threads:
        torch.set_num_threads(threads)
    snapshot = Snapshot(warehouse_dir or default_warehouse(), schema or default_schema())
    graph = onnx_graph(Path(run_dir), onnx_dir) if runtime == "onnx" else None
    scorer = Scorer(run_dir, snapshot, run, onnx=graph, max_texts=max_texts)
    # The first call pays for lazy initialisation (kernels, the text tables), not the first user.
    scorer.score(User(user_id="warm-up", **dict.fromkeys(USER_TEXT_COLUMNS, "")),
                 [Item(item_id="warm-up", scene=run.prep.scenes[0], **dict.fromkeys(ITEM_TEXT_COLUMNS, ""))])
    return scorer


def build_app(run_dir: str | Path, warehouse_dir: str | Path | None = None, *, schema: str | None = None,
              threads: int | None = None, token: str | None = None, runtime: str = "torch",
              onnx_dir: str | Path | None = None, max_texts: int = DEFAULT_MAX_TEXTS,
              max_candidates: int = DEFAULT_MAX_CANDIDATES, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
    """The ready ASGI app (see app.create_app)."""
    from .app import create_app

    if max_candidates < 1 or max_body_bytes < 1:
        raise TrainerError("--max-candidates and --max-body-bytes must be at least 1")
    scorer = load_scorer(run_dir, warehouse_dir, schema=schema, threads=threads, runtime=runtime, onnx_dir=onnx_dir,
                         max_texts=max_texts)
    return create_app(scorer, token=token, max_candidates=max_candidates, max_body_bytes=max_body_bytes)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and with Nagle on, the response body waits ~40 ms for the ACK of its headers.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as e:
        sock.close()
        raise TrainerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(run_dir: str | Path, warehouse_dir: str | Path | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, *, schema: str | None = None, threads: int | None = None,
          token_env: str = DEFAULT_TOKEN_ENV, max_candidates: int = DEFAULT_MAX_CANDIDATES,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, log_level: str = "info", runtime: str = "torch",
          onnx_dir: str | Path | None = None, max_texts: int = DEFAULT_MAX_TEXTS) -> None:
    """Serve until interrupted. The bearer token, if any, is read from the environment variable
    `token_env` (empty or unset: no token)."""
    import uvicorn

    token = os.environ.get(token_env) or None
    sock = bind(host, port)  # before loading: a taken port fails in a second, not after the load
    app = build_app(run_dir, warehouse_dir, schema=schema, threads=threads, token=token, runtime=runtime,
                    onnx_dir=onnx_dir, max_texts=max_texts,
                    max_candidates=max_candidates, max_body_bytes=max_body_bytes)
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"serving {run_dir} on http://{bound_host}:{bound_port} "
          f"({'bearer token from $' + token_env if token else 'no token'}); "
          "POST /score, GET /health, GET /metadata",
          file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


# ------------------------------------------------------------------------------------------ CLI


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `fit`")
    p.add_argument("--warehouse", metavar="DIR", default=None,
                   help="warehouse holding the serving snapshot "
                   "(default: $CTR_WAREHOUSE_DIR, else data/warehouse)")
    p.add_argument("--schema", default=None, help="warehouse schema (default: $CTR_SCHEMA, else m2ctr)")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=port, default=DEFAULT_PORT, help="port to listen on; 0 picks a free one "
                   "(default %(default)s)")
    p.add_argument("--threads", type=positive, default=None,
                   help="torch CPU threads (default: the run's own)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="what scores: the run's torch model, or its ONNX export through onnxruntime "
                   "(default %(default)s)")
    p.add_argument("--onnx", metavar="DIR", default=None,
                   help="with --runtime onnx: a directory written by `trainer export` "
                   "(default: export the run at start-up)")
    p.add_argument("--max-texts", type=positive, default=DEFAULT_MAX_TEXTS,
                   help="texts met while serving kept per side (user, item) beyond the run's own; the least "
                   "recently used go first (default %(default)s)")
    p.add_argument("--max-candidates", type=positive, default=DEFAULT_MAX_CANDIDATES,
                   help="most items per request; more is a 422 (default %(default)s)")
    p.add_argument("--max-body-bytes", type=positive, default=DEFAULT_MAX_BODY_BYTES,
                   help="largest request body; more is a 413 (default %(default)s)")
    p.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="NAME",
                   help="environment variable holding a bearer token; when it is set, /score and /metadata "
                   "need `Authorization: Bearer <token>` (default %(default)s)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level; below info there are no access lines (default %(default)s)")


def run_serve(args: argparse.Namespace) -> None:
    serve(args.run_dir, args.warehouse, args.host, args.port, schema=args.schema, threads=args.threads,
          token_env=args.token_env, max_candidates=args.max_candidates, max_body_bytes=args.max_body_bytes,
          runtime=args.runtime, onnx_dir=args.onnx, max_texts=args.max_texts,
          log_level=args.log_level)


HELP = "serve a run over HTTP: POST /score ranks candidate items for a user from the online feature snapshot"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=HELP)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_serve(args)
    except TrainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
