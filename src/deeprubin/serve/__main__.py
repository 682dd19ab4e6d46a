"""``python -m deeprubin.serve [serve.port=8000 ...]``: the scoring service (not a DVC stage).

Reads the ``serve`` node (``conf/serve/default.yaml``); the work is
:func:`deeprubin.serve.service.serve_main`. Guide: ``docs/serve.md``.
"""
from deeprubin.core import numerics

numerics.pin()  # before numpy and torch load, as in every stage process: the predict path's numbers

from omegaconf import DictConfig  # noqa: E402

from deeprubin.core.entry import hydra_entry  # noqa: E402
from deeprubin.serve.service import serve_main  # noqa: E402


def run_serve(cfg: DictConfig) -> dict:
    """Load the models, open the token store, serve until interrupted."""
    return serve_main(cfg)


main = hydra_entry(run_serve)

if __name__ == "__main__":
    main()
