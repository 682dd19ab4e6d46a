"""``python -m deeprubin.stream ...``: the stream entry point (:mod:`deeprubin.stages.stream`)."""
from deeprubin.stages.stream import main

main()
