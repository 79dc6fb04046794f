"""Queueing-theory reference values: Erlang C (M/M/n) and Erlang A (M/M/n+M).

Pure Python and numerically stable for the sizes a contact centre has (thousands of agents):
Erlang B comes from its recurrence (never a factorial), and the Erlang A series is summed in
log space, because its terms overflow a float long before the answer does.

Notation: ``rate`` calls per second, ``aht`` mean service seconds, ``agents`` servers,
``patience`` mean seconds a caller waits before hanging up (exponential).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def erlang_b(load: float, agents: int) -> float:
    """Blocking probability of M/M/n/n with offered ``load`` Erlangs (the recurrence
    B(k) = a·B(k-1) / (k + a·B(k-1)) stays in [0, 1] for any size)."""
    if agents < 0 or load < 0:
        raise ValueError("load and agents must be non-negative")
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


@dataclass(frozen=True)
class ErlangC:
    load: float          # offered Erlangs, rate * aht
    agents: int
    p_wait: float        # probability an arriving call waits (all agents busy)
    asa: float           # mean wait over all calls, seconds
    decay: float         # n·mu - lambda, per second: the waiting-time tail's rate

    def service_level(self, threshold: float) -> float:
        """P(wait <= threshold): the waiting time is 0 with 1 - P(wait), else exponential."""
        return 1.0 - self.p_wait * math.exp(-self.decay * threshold)


def erlang_c(rate: float, aht: float, agents: int) -> ErlangC:
    load = rate * aht
    if agents <= load:
        raise ValueError(f"unstable: {agents} agents for {load:.2f} Erlangs (Erlang C needs "
                         "more agents than load)")
    b = erlang_b(load, agents)
    p_wait = agents * b / (agents - load * (1.0 - b))
    decay = agents / aht - rate
    return ErlangC(load, agents, p_wait, p_wait / decay, decay)


def _log_a(x: float, y: float) -> float:
    """log A(x, y) with A(x, y) = sum_{k>=0} y^k / prod_{i=1..k} (x + i).

    This is Garnett-Mandelbaum-Reiman's A = (x e^y / y^x) * gamma(x, y) (lower incomplete
    gamma): the same power series, summed term by term in log space. Terms grow while
    x + k < y and then fall geometrically, so the sum stops once past the peak and the
    term is below the float resolution of the running total."""
    log_term = 0.0
    log_sum = 0.0
    k = 0
    while True:
        k += 1
        log_term += math.log(y) - math.log(x + k)
        if log_term > log_sum:
            log_sum = log_term + math.log1p(math.exp(log_sum - log_term))
        else:
            log_sum += math.log1p(math.exp(log_term - log_sum))
        if x + k > y and log_term < log_sum - 40.0:
            return log_sum
        if k > 10_000_000:  # pragma: no cover - a bound, never reached for sane input
            raise ArithmeticError("Erlang A series did not converge")


@dataclass(frozen=True)
class ErlangA:
    load: float
    agents: int
    patience: float
    p_wait: float        # probability an arriving call waits
    p_abandon: float     # probability an arriving call hangs up before service
    mean_wait: float     # mean time in queue over all calls (served and abandoned), seconds
    mean_queue: float    # mean number waiting


def erlang_a(rate: float, aht: float, agents: int, patience: float) -> ErlangA:
    """M/M/n+M (Palm's model as solved by Garnett, Mandelbaum and Reiman, 2002).

    With x = n·mu/theta and y = lambda/theta, the stationary birth-death chain gives
    P(all busy) = pi_n·A and L_q = pi_n·(A·(y - x) + x), with pi_n = E/(1 + (A-1)·E) and E
    Erlang B. Little's law and the abandonment rate theta·L_q give the rest:
    E[W] = L_q/lambda and P(abandon) = theta·E[W]. Always stable, so any ``agents`` >= 1.
    """
    if rate <= 0 or aht <= 0 or patience <= 0 or agents < 1:
        raise ValueError("rate, aht and patience must be positive, agents at least 1")
    mu, theta = 1.0 / aht, 1.0 / patience
    load = rate * aht
    x, y = agents * mu / theta, rate / theta
    e = erlang_b(load, agents)
    log_a = _log_a(x, y)
    # pi_n = E / (1 + (A - 1) E), written with 1/A so a huge A cannot overflow.
    inv_a = math.exp(-log_a)
    pi_n_times_a = e / (e + (1.0 - e) * inv_a)      # P(wait) = pi_n * A
    pi_n = pi_n_times_a * inv_a
    mean_queue = pi_n_times_a * (y - x) + pi_n * x
    mean_wait = mean_queue / rate
    return ErlangA(load, agents, patience, pi_n_times_a, theta * mean_wait, mean_wait,
                   mean_queue)


def erlang_a_by_chain(rate: float, aht: float, agents: int, patience: float,
                      tail: float = 1e-15) -> ErlangA:
    """The same quantities by summing the birth-death chain directly (scaled so the largest
    weight is 1): slower and only for moderate sizes, kept as an independent check."""
    mu, theta = 1.0 / aht, 1.0 / patience
    load = rate * aht
    logs = [0.0]
    for j in range(1, agents + 1):
        logs.append(logs[-1] + math.log(load) - math.log(j))
    k = 0
    while True:
        k += 1
        logs.append(logs[-1] + math.log(rate) - math.log(agents * mu + k * theta))
        if agents * mu + k * theta > rate and logs[-1] < max(logs) + math.log(tail):
            break
    peak = max(logs)
    weights = [math.exp(v - peak) for v in logs]
    total = sum(weights)
    p_wait = sum(weights[agents:]) / total
    mean_queue = sum((j - agents) * w for j, w in enumerate(weights) if j > agents) / total
    mean_wait = mean_queue / rate
    return ErlangA(load, agents, patience, p_wait, theta * mean_wait, mean_wait, mean_queue)
