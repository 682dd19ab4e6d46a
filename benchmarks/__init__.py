"""The benchmark suite: run each as ``python -m benchmarks.<name>`` (or its ``make`` target).

| module | make target | writes |
|---|---|---|
| ``gp_throughput`` | ``make bench-gp`` | ``reports/benchmarks/gp_throughput.{json,png,pdf}`` |
| ``gp_cost_floor`` | ``make bench-gp-cost-floor`` | ``reports/benchmarks/gp_cost_floor.json`` |
| ``gp_compile`` | ``make bench-gp-compile`` | ``reports/benchmarks/gp_compile.json`` |
| ``gp_hyper_subset`` | ``make bench-gp-hyper-subset`` | ``reports/benchmarks/gp_hyper_subset.json`` |
| ``pipeline_time`` | ``make bench-pipeline-time`` | ``reports/benchmarks/pipeline_time.json`` |
| ``serve_load`` | ``make bench-serve`` | ``reports/benchmarks/serve.json`` |
| ``seeds`` | ``make seeds`` | ``reports/benchmarks/seeds.json`` |

Every result records the command, the machine and the code hash (:mod:`benchmarks.common`).
Timings live here, never in DVC-tracked metrics (they would break byte-identical reruns).
"""
