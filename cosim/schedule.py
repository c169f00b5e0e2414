"""Discrete-event model of training steps on shared resources (SimPy).

A training step is a small dataflow graph of :class:`Task` s: each runs for a fixed time on one
resource (``gpu``, ``link``, ``analog``...) after its dependencies finish. Resources have a
capacity (``analog`` = the number of chips: that many analog jobs run at once) and serve waiting
tasks first come, first served (ties in the order the tasks are listed). Dependencies may reach
into the previous step (``"prev:name"``): that is how overlap across steps is written, e.g.
thermodynamic NGD's analog relaxation running while the GPU computes the next gradient.

:func:`simulate` runs a sequence of steps and returns a :class:`Schedule`: every task's start and
end, the makespan, the busy time of each resource and phase, the utilization, and the critical
path (the chain of tasks, through dependencies and resource waits, that sets the makespan).

:func:`project` gives the same totals for long runs (tens of thousands of steps) in about the
time of a few steps: deterministic durations and first-come-first-served resources make the
schedule of a repeating pattern of steps settle into an exact periodic regime (a max-plus linear
system); once the state at a pattern boundary repeats up to a time shift, every later pattern
adds exactly that shift, so the rest of the run is extrapolated instead of simulated.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

PREVIOUS = "prev:"


class ScheduleError(ValueError):
    """A step graph that cannot run: unknown dependency or resource, a cycle, a bad duration."""


@dataclass(frozen=True)
class Task:
    """One piece of work of a step. ``resource`` None is a pure delay (needs no resource).

    ``duration_s`` seconds; ``energy_j`` joules spent by the task; ``phase`` groups tasks in the
    breakdown (``forward``, ``transfer``, ``equilibrate``...); ``deps`` names tasks of the same
    step, or of the previous step with the ``prev:`` prefix.
    """

    name: str
    duration_s: float
    resource: str | None = "gpu"
    deps: tuple[str, ...] = ()
    phase: str = ""
    energy_j: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith(PREVIOUS):
            raise ScheduleError(f"task name must be non-empty and not start with {PREVIOUS!r}, got {self.name!r}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ScheduleError(f"task {self.name!r}: duration_s must be finite and >= 0, got {self.duration_s!r}")
        if not (math.isfinite(self.energy_j) and self.energy_j >= 0):
            raise ScheduleError(f"task {self.name!r}: energy_j must be finite and >= 0, got {self.energy_j!r}")
        if isinstance(self.deps, str):
            raise ScheduleError(f"task {self.name!r}: deps must be a tuple of names, not a string")

    @property
    def phase_name(self) -> str:
        return self.phase or self.name


@dataclass(frozen=True)
class StepGraph:
    """The tasks of one step, in the order that breaks ties for a resource."""

    tasks: tuple[Task, ...]
    name: str = ""

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ScheduleError(f"step {self.name!r}: duplicate task names {dup}")
        known = set(names)
        for t in self.tasks:
            for dep in t.deps:
                if not dep.startswith(PREVIOUS) and dep not in known:
                    raise ScheduleError(f"step {self.name!r}: task {t.name!r} depends on unknown task {dep!r}")
        self.topological_order()  # raises on a cycle

    def topological_order(self) -> list[Task]:
        """Tasks ordered so every same-step dependency comes first (list order among equals)."""
        by_name = {t.name: t for t in self.tasks}
        state: dict[str, int] = {}
        order: list[Task] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ScheduleError(f"step {self.name!r}: dependency cycle {' -> '.join((*path, name))}")
            state[name] = 1
            for dep in by_name[name].deps:
                if not dep.startswith(PREVIOUS):
                    visit(dep, (*path, name))
            state[name] = 2
            order.append(by_name[name])

        for t in self.tasks:
            visit(t.name, ())
        return order

    @property
    def resources(self) -> set[str]:
        return {t.resource for t in self.tasks if t.resource is not None}


@dataclass(frozen=True)
class TaskRecord:
    step: int
    name: str
    phase: str
    resource: str | None
    ready_s: float
    """When its dependencies were done (it may then wait for its resource)."""
    start_s: float
    end_s: float
    energy_j: float
    waited_for: tuple[int, str] | None
    """The task whose release of the resource let this one start, when it had to wait."""
    deps: tuple[tuple[int, str], ...]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Schedule:
    """Outcome of :func:`simulate` (times in seconds, from the start of the first step)."""

    records: list[TaskRecord]
    capacities: dict[str, int]
    makespan_s: float
    step_ends_s: list[float]
    busy_s: dict[str, float] = field(default_factory=dict)
    """Summed task time per resource."""
    phase_s: dict[str, float] = field(default_factory=dict)
    """Summed task time per phase."""
    energy_j: float = 0.0

    @property
    def n_steps(self) -> int:
        return len(self.step_ends_s)

    @property
    def time_per_step_s(self) -> float:
        return self.makespan_s / max(1, self.n_steps)

    def utilization(self) -> dict[str, float]:
        """Busy fraction of each resource over the makespan (capacity counted)."""
        if self.makespan_s == 0:
            return {r: 0.0 for r in self.capacities}
        return {r: self.busy_s.get(r, 0.0) / (self.capacities[r] * self.makespan_s) for r in self.capacities}

    def critical_path(self) -> list[TaskRecord]:
        """The chain that ends with the last task to finish: each link is the dependency that
        finished last (when the task started as soon as it was ready) or the task whose release
        of the resource it waited for; a gap means the chain starts there."""
        if not self.records:
            return []
        index = {(r.step, r.name): r for r in self.records}
        current = max(self.records, key=lambda r: (r.end_s, r.step))
        path = [current]
        while True:
            if current.waited_for is not None and current.start_s > current.ready_s:
                prev = index[current.waited_for]
            elif current.deps:
                prev = max((index[d] for d in current.deps), key=lambda r: r.end_s)
                if not math.isclose(prev.end_s, current.ready_s, rel_tol=1e-12, abs_tol=1e-15):
                    break
            else:
                break
            path.append(prev)
            current = prev
        return path[::-1]

    def critical_phases_s(self) -> dict[str, float]:
        """Time on the critical path per phase (what shortening a phase would save, at most)."""
        out: dict[str, float] = defaultdict(float)
        for r in self.critical_path():
            out[r.phase] += r.duration_s
        return dict(out)


def _capacities(steps: Sequence[StepGraph], capacities: dict[str, int] | None) -> dict[str, int]:
    caps = dict(capacities or {})
    for name, cap in caps.items():
        if not (isinstance(cap, int) and cap >= 1):
            raise ScheduleError(f"capacity of resource {name!r} must be an integer >= 1, got {cap!r}")
    for step in steps:
        for resource in step.resources:
            caps.setdefault(resource, 1)
    return caps


def simulate(steps: Sequence[StepGraph], capacities: dict[str, int] | None = None) -> Schedule:
    """Run ``steps`` one after another (overlapping as their dependencies allow) on resources
    of the given ``capacities`` (default 1 each) and record everything."""
    if not steps:
        raise ScheduleError("nothing to simulate: no steps")
    caps = _capacities(steps, capacities)
    env = simpy.Environment()
    resources = {name: simpy.Resource(env, capacity=cap) for name, cap in caps.items()}
    holders: dict[str, list[tuple[int, str]]] = {name: [] for name in caps}
    last_release: dict[str, tuple[int, str] | None] = {name: None for name in caps}
    done: dict[tuple[int, str], simpy.Event] = {}
    records: list[TaskRecord] = []

    def run(step: int, task: Task, deps: list[tuple[int, str]]) -> simpy.events.ProcessGenerator:
        if deps:
            yield env.all_of([done[d] for d in deps])
        ready = env.now
        waited_for = None
        if task.resource is None:
            start = env.now
            yield env.timeout(task.duration_s)
        else:
            res = resources[task.resource]
            with res.request() as req:
                must_wait = not req.triggered  # granted at once when a unit was free
                yield req
                if must_wait:
                    waited_for = last_release[task.resource]
                start = env.now
                holders[task.resource].append((step, task.name))
                yield env.timeout(task.duration_s)
                holders[task.resource].remove((step, task.name))
                last_release[task.resource] = (step, task.name)
        records.append(
            TaskRecord(step, task.name, task.phase_name, task.resource, ready, start, env.now, task.energy_j, waited_for, tuple(deps))
        )
        done[(step, task.name)].succeed()

    for k, graph in enumerate(steps):
        order = graph.topological_order()
        for task in order:
            done[(k, task.name)] = env.event()
        for task in order:
            deps = []
            for dep in task.deps:
                if dep.startswith(PREVIOUS):
                    if k == 0:
                        continue
                    target = dep[len(PREVIOUS):]
                    if (k - 1, target) not in done:
                        raise ScheduleError(
                            f"step {k}: task {task.name!r} depends on {dep!r}, which step {k - 1} does not have"
                        )
                    deps.append((k - 1, target))
                else:
                    deps.append((k, dep))
            env.process(run(k, task, deps))
    env.run()
    step_ends = [0.0] * len(steps)
    busy: dict[str, float] = defaultdict(float)
    phases: dict[str, float] = defaultdict(float)
    energy = 0.0
    for r in records:
        step_ends[r.step] = max(step_ends[r.step], r.end_s)
        if r.resource is not None:
            busy[r.resource] += r.duration_s
        phases[r.phase] += r.duration_s
        energy += r.energy_j
    makespan = max((r.end_s for r in records), default=0.0)
    return Schedule(records, caps, makespan, step_ends, dict(busy), dict(phases), energy)


@dataclass
class Projection:
    """Totals of a long run of a repeating pattern of steps (see :func:`project`)."""

    n_steps: int
    makespan_s: float
    period_s: float
    """Time one more repetition of the pattern adds in the periodic regime."""
    pattern_steps: int
    busy_s: dict[str, float]
    phase_s: dict[str, float]
    energy_j: float
    capacities: dict[str, int]
    simulated_steps: int
    """Steps actually simulated; the rest was extrapolated."""
    periodic_from_cycle: int | None
    """First pattern repetition of the periodic regime (None: the whole run was simulated)."""
    sample: Schedule
    """The simulated part (for the critical path and a Gantt chart of the steady regime)."""

    @property
    def time_per_step_s(self) -> float:
        """Steady-state time per step (the period over the pattern length)."""
        return self.period_s / self.pattern_steps

    def utilization(self) -> dict[str, float]:
        return {r: self.busy_s.get(r, 0.0) / (c * self.makespan_s) if self.makespan_s else 0.0 for r, c in self.capacities.items()}


def _cycle_starts(schedule: Schedule, pattern_steps: int, n_cycles: int) -> list[list[float]]:
    """Start times of every task, grouped by pattern repetition, in a fixed order."""
    cycles: list[list[tuple[int, str, float]]] = [[] for _ in range(n_cycles)]
    for r in schedule.records:
        c, offset = divmod(r.step, pattern_steps)
        if c < n_cycles:
            cycles[c].append((offset, r.name, r.start_s))
    return [[t for _, _, t in sorted(cycle)] for cycle in cycles]


def _uniform_shift(a: list[float], b: list[float], rel_tol: float) -> float | None:
    shifts = [y - x for x, y in zip(a, b)]
    lo, hi = min(shifts), max(shifts)
    scale = max(abs(hi), max(abs(v) for v in b), 1e-300)
    return 0.5 * (lo + hi) if hi - lo <= rel_tol * scale else None


def project(
    pattern: Sequence[StepGraph],
    n_steps: int,
    capacities: dict[str, int] | None = None,
    max_cycles: int = 256,
    rel_tol: float = 1e-12,
) -> Projection:
    """Totals of ``n_steps`` steps that repeat ``pattern`` (e.g. nine plain K-FAC steps and one
    with inverse updates), simulating only until the schedule is periodic.

    The regime is periodic from repetition ``c`` when the task start times of repetitions
    ``c - 2``, ``c - 1`` and ``c`` differ by one uniform shift (``rel_tol``): the state the
    next repetition sees (resource availability, previous-step dependencies) is then the same up
    to that shift, and so is everything after. The run is then simulated up to repetition
    ``c`` plus the final partial pattern, and each skipped repetition adds the shift. Without a
    periodic regime within ``max_cycles`` repetitions the whole run is simulated.
    """
    if not pattern:
        raise ScheduleError("the pattern has no steps")
    if not (isinstance(n_steps, int) and n_steps >= 1):
        raise ScheduleError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    pattern = list(pattern)
    p = len(pattern)
    n_cycles, tail = divmod(n_steps, p)
    caps = _capacities(pattern, capacities)

    def full() -> Projection:
        sched = simulate(pattern * n_cycles + pattern[:tail], caps)
        return Projection(n_steps, sched.makespan_s, sched.makespan_s / max(1, n_cycles) if n_cycles else 0.0, p,
                          sched.busy_s, sched.phase_s, sched.energy_j, caps, n_steps, None, sched)

    trial = 4
    while trial <= min(max_cycles, n_cycles):
        sched = simulate(pattern * trial, caps)
        starts = _cycle_starts(sched, p, trial)
        for c in range(2, trial):
            s1 = _uniform_shift(starts[c - 2], starts[c - 1], rel_tol)
            s2 = _uniform_shift(starts[c - 1], starts[c], rel_tol)
            if s1 is not None and s2 is not None and math.isclose(s1, s2, rel_tol=1e-9, abs_tol=1e-15):
                return _extrapolate(pattern, caps, n_steps, n_cycles, tail, c, s2)
        trial *= 2
    return full()


def _extrapolate(
    pattern: list[StepGraph], caps: dict[str, int], n_steps: int, n_cycles: int, tail: int, c: int, period: float
) -> Projection:
    kept = c + 1  # repetitions simulated: 0..c
    sched = simulate(pattern * kept + pattern[:tail], caps)
    skipped = n_cycles - kept
    # per-repetition totals in the periodic regime: those of repetition c
    p = len(pattern)
    busy: dict[str, float] = defaultdict(float)
    phases: dict[str, float] = defaultdict(float)
    energy = 0.0
    for r in sched.records:
        if r.step // p == c:
            if r.resource is not None:
                busy[r.resource] += r.duration_s
            phases[r.phase] += r.duration_s
            energy += r.energy_j
    total_busy = {k: v + skipped * busy.get(k, 0.0) for k, v in sched.busy_s.items()}
    total_phase = {k: v + skipped * phases.get(k, 0.0) for k, v in sched.phase_s.items()}
    return Projection(
        n_steps, sched.makespan_s + skipped * period, period, p, total_busy, total_phase,
        sched.energy_j + skipped * energy, caps, kept * p + tail, c, sched,
    )
