#!/usr/bin/env python3
"""Reference ε (and noise multipliers) from Google's dp-accounting RDP
accountant, for FedHE's accountant tests (tests/fixtures/dp_reference.csv).

    python3 -m venv /tmp/dpvenv && /tmp/dpvenv/bin/pip install dp-accounting
    /tmp/dpvenv/bin/python scripts/dp_reference.py > tests/fixtures/dp_reference.csv
"""
import itertools
import sys

import dp_accounting
from dp_accounting import rdp


def epsilon(q, sigma, steps, delta):
    acc = rdp.RdpAccountant()  # dp-accounting's default orders
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    acc.compose(event)
    return acc.get_epsilon(delta)


def noise_for(q, steps, delta, target):
    lo, hi = 0.0, 1000.0
    while hi - lo > 1e-3 * max(hi, 1e-3):
        mid = 0.5 * (lo + hi)
        if epsilon(q, mid, steps, delta) > target:
            lo = mid
        else:
            hi = mid
    return hi


from importlib.metadata import version

print(f"# dp-accounting {version('dp-accounting')}, RdpAccountant with its default orders")
print("kind,q,sigma,steps,delta,epsilon")
for q, sigma, steps, delta in itertools.product(
    [0.001, 0.01, 0.05, 0.25, 1.0], [0.6, 1.0, 2.5, 8.0], [1, 100, 10_000], [1e-5, 1e-3]
):
    print(f"epsilon,{q},{sigma},{steps},{delta},{epsilon(q, sigma, steps, delta):.10g}")
for q, steps, delta, target in itertools.product(
    [0.01, 0.05], [100, 2000], [1e-5], [1.0, 3.0, 8.0]
):
    print(f"noise,{q},{noise_for(q, steps, delta, target):.10g},{steps},{delta},{target}")
sys.stdout.flush()
