"""Serve the labelling models online: ``python -m jobs.serve [--config my.yaml] [--set k=v ...]``.

The same ``detector`` → ``sppe`` → ``pose_nms`` as ``jobs.label``, from the same config file, behind HTTP on Ray
Serve (``pipelines.serve``; routes and error codes in ``actors.serve``)::

    python -m jobs.serve --config configs/demo.yaml            # http://127.0.0.1:8000/ (a page to try it)
    curl -s --data-binary @samples/images/000000000785.jpg http://127.0.0.1:8000/v1/poses

Configuration is validated and the weights are read (hashed) before Ray starts (exit 2 with the reason). The job
starts a local Ray (``--num-cpus``) or joins ``RAY_ADDRESS`` (``ray job submit``), deploys, prints the address and
serves until Ctrl-C (exit 130 after Serve is shut down), or with ``--detach`` leaves the application running on the
cluster and exits 0. As a Serve application: ``serve run jobs.serve:app_builder config=configs/demo.yaml``
(arguments: ``config``, and ``set`` as ``k=v`` pairs separated by ``;``).

Set ``RAYPOSE_SERVE_TOKEN`` (``serve.token_env``) in the environment of the cluster to require
``Authorization: Bearer <token>`` on every request; it is never logged.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from jobs.ray_init import EXIT_INTERRUPTED

__all__ = ["main", "app_builder", "prepare"]

logger = logging.getLogger("raypose.serve")

EXIT_USAGE = 2


def prepare(config_file: str | None, overrides: list[str]):
    """Config, digests and the bound application, all checked before Ray starts (raises ValueError/OSError/
    ConfigError with the reason)."""
    from jobs.label import RANDOM_BANNER, _detector_digest, _resolve_weights, _sppe_digest, build_config
    from pipelines.configs import to_dict
    from pipelines.serve import build_app, check_serve_config

    cfg = build_config(config_file, overrides)
    check_serve_config(cfg)
    cfg = _resolve_weights(cfg)
    det_sha = _detector_digest(cfg.detector)
    sppe_sha = _sppe_digest(cfg.sppe, det_sha)
    for what, sha in (("the SPPE", sppe_sha), ("the detector", det_sha)):
        if sha == "random":
            logger.warning(RANDOM_BANNER.format(what=what).replace("written by this run", "answered"))
    return cfg, build_app(cfg, sppe_sha, to_dict(cfg))


def app_builder(args: dict):
    """``serve run jobs.serve:app_builder config=my.yaml set='sppe.flip_test=true;serve.sppe_max_batch=8'``."""
    overrides = [s for s in str(args.get("set", "")).split(";") if s.strip()]
    return prepare(args.get("config"), overrides)[1]


def main(
    argv: list[str] | None = None, ready: threading.Event | None = None, stop: threading.Event | None = None
) -> int:
    """Run the endpoint until Ctrl-C (or ``stop`` is set: tests). ``ready`` is set once it answers."""
    parser = argparse.ArgumentParser(prog="python -m jobs.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config file (the same as jobs.label's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray started here (default: all)")
    parser.add_argument("--host", help="listen address (default serve.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default serve.port, 8000)")
    parser.add_argument("--detach", action="store_true", help="deploy, then exit and leave the application running")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.host:
        args.overrides.append(f"serve.host={args.host}")
    if args.port:
        args.overrides.append(f"serve.port={args.port}")

    import os

    from pipelines.configs import ConfigError

    if args.detach and not os.environ.get("RAY_ADDRESS"):
        print("error: --detach leaves the endpoint on a running cluster: set RAY_ADDRESS (ray job submit does)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        cfg, app = prepare(args.config, args.overrides)
    except (ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    from ray import serve

    from jobs.ray_init import init_ray
    from pipelines.serve import APP_NAME

    init_ray(args.num_cpus)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(app, name=APP_NAME, route_prefix=cfg.serve.route_prefix)
    url = f"http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix.rstrip('/')}"
    print(f"raypose endpoint ready: {url}/ (page), POST {url}/v1/poses, GET {url}/v1/models", flush=True)
    if ready is not None:
        ready.set()
    if args.detach:
        return 0
    stop = stop or threading.Event()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        print("interrupted: shutting the endpoint down", file=sys.stderr, flush=True)
        serve.shutdown()
        return EXIT_INTERRUPTED
    serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
