"""Benchmarks and load tests of the voting service.

``python -m loadtests.bench`` (``make bench``) starts its own embedded Valkey and PostgreSQL
and the service as real processes, and prints side-by-side throughput figures;
``loadtests/locustfile.py`` drives a running deployment with simulated citizens.
Traffic only ever goes to 127.0.0.1.
"""
