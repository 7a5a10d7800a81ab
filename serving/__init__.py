"""Online scoring, a stage of its own beside the trainer: `python -m serving RUN_DIR` (also
`python -m trainer serve RUN_DIR`), a FastAPI + uvicorn service over a run and the warehouse's snapshot.

payload   the request and response bodies, from the raw column lists of m2ctr.schema
snapshot  the warehouse's online feature snapshot, in memory and indexed
scorer    a request -> training_samples-shaped rows -> the run's own scoring path
app       the FastAPI app: routes, errors, bearer token and body size limit
server    serve(), its command-line arguments, uvicorn
"""

from .server import add_serve_arguments, build_app, load_scorer, run_serve, serve

__all__ = ["add_serve_arguments", "build_app", "load_scorer", "run_serve", "serve"]
