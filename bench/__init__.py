"""Benchmarks of the service: figures, not tests (`make bench`, `python -m bench`).

Outside the wheel and the Docker image. The test suite shares its parts that drive a real server:
``bench.server`` (start, stop, resources of a `garment-sorter serve` subprocess), ``bench.load``
(wrk, raw HTTP/1.1 open- and closed-loop load, multipart bodies) and ``bench.photos`` (the test set
and catalog-photo renders).
"""
