"""K-FAC (Martens and Grosse 2015) as a ``torch.optim.Optimizer`` whose inversions and solves go
through the pluggable solver interface (``exact``, ``cg``, ``thermo``...).

Usage::

    opt = KFAC(model, lr=0.05, damping=1e-3, solver="thermo", fisher_type="mc")
    for inputs, targets in batches:
        opt.set_batch(inputs, targets)           # mc and type-2 build G from their own pass
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            return loss
        opt.step(closure)

Parameter groups: group 0 holds the parameters of the Linear and Conv2d layers that K-FAC
preconditions; group 1 (when present) holds every other trainable parameter, updated by SGD
(with the same momentum and weight decay) at its own learning rate. Both are ordinary
``param_groups``: learning-rate schedulers and ``state_dict`` work as for any optimizer.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from thermo.errors import ThermoError

from ..curvature import loss_hessian_factor
from ..errors import (
    NonFiniteGradientError,
    UnsupportedConfigurationError,
    require_model,
)
from ..models import model_inputs_call
from ..momentum import heavy_ball
from ..solvers import LinearSolver, SolverDiagnostics, get_solver
from . import layers as L
from .config import KFACConfig

_CONFIG_FIELDS = {f.name for f in fields(KFACConfig)}


class KFACWarning(UserWarning):
    """Parameters that K-FAC cannot precondition, layers whose hooks never fired, or a kind of
    solver failure that fell back to the exact backend (once per layer, operation and error type)."""


@dataclass
class _Layer:
    name: str
    module: nn.Module
    approx: str
    fired: bool = False
    inputs: Tensor | None = None
    output: Tensor | None = None
    grad_output: Tensor | None = None
    """Output gradient of the training loss (``empirical``)."""
    g_cov: Tensor | None = None
    """``G`` of this step from the curvature pass (``mc``, ``type-2``)."""
    handles: list[Any] = field(default_factory=list)


class KFAC(torch.optim.Optimizer):
    """K-FAC with EMA factors, factor/inverse update intervals, pi-adjusted, factored or
    eigenbasis damping, KL clipping, weight-sharing ``expand``/``reduce``, and any solver.

    Args:
        model: the network; its Linear and Conv2d layers are registered by name.
        lr: learning rate of the preconditioned layers.
        damping: Tikhonov damping ``lambda`` of the curvature (see ``KFACConfig.damping_mode``).
        momentum: heavy-ball momentum on the (clipped) update.
        weight_decay: L2 coefficient added to the gradient before preconditioning.
        kl_clip: scale the update so ``lr^2 sum <update, grad>`` stays below it (Ba et al.
            2017); None disables.
        first_order_lr: learning rate of the parameters K-FAC cannot handle (default ``lr``).
        solver: a backend name, class or instance (see :mod:`digital.solvers`).
        solver_options: keyword options of a backend given by name.
        config: a :class:`KFACConfig`, or its fields as keyword arguments.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.01,
        damping: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        kl_clip: float | None = 1e-3,
        first_order_lr: float | None = None,
        solver: str | LinearSolver | type[LinearSolver] = "exact",
        solver_options: dict[str, Any] | None = None,
        config: KFACConfig | None = None,
        **config_fields: Any,
    ) -> None:
        require_model(model, "KFAC", "it hooks each layer's inputs and output gradients")
        unknown = set(config_fields) - _CONFIG_FIELDS
        if unknown:
            raise UnsupportedConfigurationError(
                f"unknown K-FAC option(s) {sorted(unknown)}; known: {sorted(_CONFIG_FIELDS)}"
            )
        if "per_module" in config_fields and isinstance(config_fields["per_module"], dict):
            config_fields["per_module"] = tuple(config_fields["per_module"].items())
        self.config = replace(config, **config_fields) if config is not None else KFACConfig(**config_fields)
        for name, value in (("lr", lr), ("damping", damping), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not (math.isfinite(value) and value >= 0):
                raise UnsupportedConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
        if kl_clip is not None and not kl_clip > 0:
            raise UnsupportedConfigurationError(f"kl_clip must be > 0 or None, got {kl_clip!r}")
        self.model = model
        options = dict(solver_options or {})
        if not isinstance(solver, LinearSolver):
            # the factors are symmetrized and checked for finiteness here; the solver's own input
            # checks would repeat that pass over every factor (benchmarks/bench_solver_interface.py)
            options.setdefault("check_inputs", False)
        self.solver = get_solver(solver, **options)
        if self.config.damping_mode == "eigenbasis" and not self.solver.supports_eigh:
            raise UnsupportedConfigurationError(
                f"damping_mode='eigenbasis' needs eigendecompositions; the {self.solver.name!r} backend has none"
            )
        self._fallback = get_solver("exact") if self.config.solver_fallback == "exact" else None
        self._layers, first_order, self._table_rows = self._register(model)
        kfac_params = [p for layer in self._layers for p in _layer_params(layer.module)]
        groups: list[dict[str, Any]] = [{"params": kfac_params, "kind": "kfac"}]
        if first_order:
            groups.append({"params": first_order, "kind": "first_order", "lr": first_order_lr if first_order_lr is not None else lr})
        if not kfac_params:
            raise UnsupportedConfigurationError("the model has no Linear or Conv2d layer that K-FAC can precondition")
        defaults = dict(lr=lr, damping=damping, momentum=momentum, weight_decay=weight_decay, kl_clip=kl_clip)
        super().__init__(groups, defaults)
        self._step_count = 0
        self._batch: tuple[Any, Tensor] | None = None
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._checked_hooks = False
        self.last_stats: dict[str, Any] = {}
        self.last_diagnostics: dict[str, list[SolverDiagnostics]] = {}
        self._fallback_reasons: list[str] = []
        self._warned_fallbacks: set[tuple[str, str, str]] = set()
        if first_order:
            warnings.warn(
                f"K-FAC cannot precondition {len(first_order)} parameter tensor(s); they get first-order updates "
                "(see the registration table)",
                KFACWarning,
                stacklevel=2,
            )
        if first_order or self.config.verbose:
            print(self.registration_table())

    # -- registration ----------------------------------------------------------------------
    def _register(self, model: nn.Module) -> tuple[list[_Layer], list[nn.Parameter], list[tuple[str, ...]]]:
        layers: list[_Layer] = []
        handled: set[int] = set()
        rows: list[tuple[str, ...]] = []
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            reason = L.unsupported_reason(module)
            shapes = ", ".join("x".join(map(str, p.shape)) for p in own)
            if reason is None:
                approx = self.config.approximation_for(name)
                layer = _Layer(name or "<root>", module, approx)
                layer.handles.append(module.register_forward_hook(self._make_forward_hook(layer)))
                layers.append(layer)
                handled.update(id(p) for p in _layer_params(module))
                rows.append((layer.name, type(module).__name__, shapes, f"K-FAC ({approx} if shared)"))
            else:
                rows.append((name or "<root>", type(module).__name__, shapes, f"first-order: {reason}"))
        first_order = [p for p in model.parameters() if p.requires_grad and id(p) not in handled]
        return layers, first_order, rows

    def registration_table(self) -> str:
        """Which parameters K-FAC preconditions and which it updates first-order, and why."""
        header = ("module", "type", "parameters", "update")
        rows = [header, *self._table_rows]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        return "\n".join(["K-FAC registration", line(header), "  ".join("-" * w for w in widths), *map(line, self._table_rows)])

    def remove_hooks(self) -> None:
        """Detach the forward hooks from the model (the optimizer cannot update factors after)."""
        for layer in self._layers:
            for handle in layer.handles:
                handle.remove()
            layer.handles.clear()

    # -- capture ---------------------------------------------------------------------------
    def _make_forward_hook(self, layer: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if not torch.is_grad_enabled():  # evaluation passes do not feed the curvature
                return
            layer.fired = True
            mode = self._capture_mode
            if mode is None:
                return
            layer.inputs = inputs[0].detach()
            if mode == "pass":
                layer.output = output
            elif output.requires_grad:  # empirical: the training backward brings the gradient
                output.register_hook(lambda g: setattr(layer, "grad_output", g.detach()))

        return hook

    @property
    def _capture_mode(self) -> str | None:
        if getattr(self, "_in_pass", False):
            return "pass"
        if self.config.fisher_type == "empirical" and self._is_factor_step():
            return "empirical"
        return None

    def _is_factor_step(self) -> bool:
        return self._step_count % self.config.factor_update_steps == 0

    def _is_inverse_step(self) -> bool:
        return self._step_count % self.config.inv_update_steps == 0

    def set_batch(self, inputs: Tensor | tuple[Tensor, ...], targets: Tensor | None = None) -> None:
        """Give the current batch (needed by ``fisher_type`` ``mc`` and ``type-2``, which run
        their own forward and backward passes for the curvature on factor-update steps)."""
        self._batch = (inputs, targets)

    # -- the step --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        t0 = time.perf_counter()
        self._fallback_reasons = []
        factor_step = self._is_factor_step()
        if factor_step and self.config.fisher_type != "empirical":
            self._curvature_pass()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        t1 = time.perf_counter()
        self._check_gradients()
        if factor_step:
            self._update_factors()
        t2 = time.perf_counter()
        self.last_diagnostics = {}
        if self._is_inverse_step():
            self._update_inverses()
        updates = self._precondition()
        t3 = time.perf_counter()
        self._apply(updates)
        self._step_count += 1
        self._batch = None
        diagnostics = [d for ds in self.last_diagnostics.values() for d in ds]
        analog = sum(d.analog_time_s for d in diagnostics)
        errors = [d.estimated_rel_error for d in diagnostics if d.estimated_rel_error is not None]
        self.last_stats = {
            "step": self._step_count,
            "factor_update": factor_step,
            "gradient_s": t1 - t0,
            "factors_s": t2 - t1,
            "precondition_s": t3 - t2,
            "update_s": time.perf_counter() - t3,
            "analog_time_s": analog,
            "solver_calls": len(diagnostics),
            "solver_max_rel_error": max(errors) if errors else 0.0,
            "fallbacks": len(self._fallback_reasons),
            "fallback_reasons": tuple(self._fallback_reasons),
            "kl_scale": self._kl_scale,
        }
        return loss

    def _curvature_pass(self) -> None:
        if self._batch is None:
            raise UnsupportedConfigurationError(
                f"fisher_type={self.config.fisher_type!r} builds G from its own backward pass and needs the batch: "
                "call optimizer.set_batch(inputs, targets) before step(), or use fisher_type='empirical'"
            )
        inputs, _ = self._batch
        with torch.enable_grad():
            self._in_pass = True
            try:
                for layer in self._layers:
                    layer.output = None
                outputs = model_inputs_call(self.model, inputs)
            finally:
                self._in_pass = False
            active = [layer for layer in self._layers if layer.output is not None and layer.output.requires_grad]
            columns = self._loss_gradient_columns(outputs.detach())
            n = outputs.shape[0]
            covs: dict[str, Tensor] = {}
            for i, column in enumerate(columns):
                grads = torch.autograd.grad(
                    outputs, [layer.output for layer in active], grad_outputs=column,
                    retain_graph=i < len(columns) - 1, allow_unused=True,
                )
                for layer, g in zip(active, grads):
                    if g is None:
                        continue
                    cov = L.gradient_covariance(L.output_rows(layer.module, g), layer.approx, n)
                    covs[layer.name] = covs[layer.name] + cov if layer.name in covs else cov
        for layer in self._layers:
            layer.output = None
            layer.g_cov = covs.get(layer.name)

    def _loss_gradient_columns(self, outputs: Tensor) -> list[Tensor]:
        """Per-example vectors ``v`` (each ``(N, d_z)``) with ``sum v v^T`` equal (type-2) or equal
        in expectation (mc) to the per-example loss Hessian in the outputs."""
        if outputs.ndim != 2:
            raise UnsupportedConfigurationError(f"K-FAC expects model outputs (N, d_z), got shape {tuple(outputs.shape)}")
        n, d = outputs.shape
        if self.config.fisher_type == "type-2":
            factor = loss_hessian_factor(outputs, self.config.loss)  # (N, d_z, d_z), L L^T = H
            return [factor[:, :, c] for c in range(d)]
        m = self.config.mc_samples
        columns = []
        for _ in range(m):
            if self.config.loss == "mse":
                eps = torch.randn(n, d, generator=self._generator, dtype=outputs.dtype)
                columns.append(eps.to(outputs.device) / math.sqrt(m))
            else:
                p = outputs.softmax(-1)
                labels = torch.multinomial(p.detach().cpu().to(torch.float64), 1, generator=self._generator)[:, 0]
                onehot = torch.nn.functional.one_hot(labels, d).to(outputs.dtype).to(outputs.device)
                columns.append((p - onehot) / math.sqrt(m))
        return columns

    def _check_gradients(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise NonFiniteGradientError(f"the gradient of {self._param_name(p)} contains NaN or infinity")

    def _param_name(self, p: Tensor) -> str:
        for name, q in self.model.named_parameters():
            if q is p:
                return f"parameter {name!r} {tuple(p.shape)}"
        return f"a parameter of shape {tuple(p.shape)}"

    def _update_factors(self) -> None:
        decay = self.config.ema_decay
        empirical = self.config.fisher_type == "empirical"
        if not self._checked_hooks:
            self._check_hooks()
        for layer in self._layers:
            if layer.inputs is None or (layer.grad_output if empirical else layer.g_cov) is None:
                layer.inputs = layer.grad_output = layer.g_cov = None
                continue
            bias = layer.module.bias is not None
            a_new = L.input_covariance(L.input_rows(layer.module, layer.inputs), layer.approx, bias)
            if empirical:
                n = layer.inputs.shape[0]
                # the mean loss's output gradient is g_n / N per example
                g_rows = L.output_rows(layer.module, layer.grad_output * n)
                g_new = L.gradient_covariance(g_rows, layer.approx, n)
            else:
                g_new = layer.g_cov
            for name, value in (("A", a_new), ("G", g_new)):
                if not bool(torch.isfinite(value).all()):
                    raise NonFiniteGradientError(f"the K-FAC factor {name} of layer {layer.name!r} is not finite")
            state = self.state[layer.module.weight]
            if "A" not in state:
                state["A"], state["G"] = a_new, g_new
            else:
                state["A"].mul_(decay).add_(a_new, alpha=1 - decay)
                state["G"].mul_(decay).add_(g_new, alpha=1 - decay)
            layer.inputs = layer.grad_output = layer.g_cov = None

    def _check_hooks(self) -> None:
        silent = [layer.name for layer in self._layers if not layer.fired]
        self._checked_hooks = True
        if silent:
            self._silent = set(silent)
            warnings.warn(
                f"the forward hooks of {silent} never fired in the first step (the layer is unused, or called "
                "through a functional path that bypasses its module): K-FAC has no statistics for them and "
                "updates their parameters first-order",
                KFACWarning,
                stacklevel=4,
            )
            self._table_rows = [
                (r[0], r[1], r[2], "first-order: hooks never fired") if r[0] in silent else r for r in self._table_rows
            ]

    # -- curvature -------------------------------------------------------------------------
    def _dampings(self, state: dict[str, Tensor], damping: float) -> tuple[float, float]:
        A, G = state["A"], state["G"]
        pi = 1.0
        if self.config.damping_mode == "pi":
            tr_a = float(torch.diagonal(A).sum()) / A.shape[0]
            tr_g = float(torch.diagonal(G).sum()) / G.shape[0]
            if tr_a > 0 and tr_g > 0:
                pi = math.sqrt(tr_a / tr_g)
        root = math.sqrt(damping)
        floor = self.config.min_damping
        return max(pi * root, floor), max(root / pi, floor)

    def _call(self, layer: _Layer, op: str, *args: Any, **kwargs: Any) -> Any:
        """One solver operation, recorded, with the configured fallback to the exact backend."""
        try:
            out = getattr(self.solver, op)(*args, **kwargs)
            value = out.x if op == "solve" else out.inverse
            if not bool(torch.isfinite(value).all()):
                raise NonFiniteGradientError(f"the {self.solver.name!r} backend returned a non-finite {op} for {layer.name!r}")
        except (ThermoError, NonFiniteGradientError, torch.linalg.LinAlgError) as err:
            if self._fallback is None or self.solver is self._fallback:
                raise
            reason = f"{layer.name} {op}: {type(err).__name__}: {err}"
            self._fallback_reasons.append(reason)
            kind = (layer.name, op, type(err).__name__)
            if kind not in self._warned_fallbacks:
                self._warned_fallbacks.add(kind)
                warnings.warn(
                    f"the {self.solver.name!r} backend failed ({reason}); that {op} fell back to the exact "
                    "backend (solver_fallback='none' raises instead). Later failures of this kind are only "
                    "counted, in last_stats['fallbacks'] and ['fallback_reasons']",
                    KFACWarning,
                    stacklevel=2,
                )
            kwargs.pop("x0", None)
            out = getattr(self._fallback, op)(*args, **kwargs)
        self.last_diagnostics.setdefault(layer.name, []).append(out.diagnostics)
        return out

    def _update_inverses(self) -> None:
        damping = self.param_groups[0]["damping"]
        for layer in self._active_layers():
            state = self.state[layer.module.weight]
            if "A" not in state:
                continue
            if self.config.damping_mode == "eigenbasis":
                state["A_eig"] = self.solver.eigh(state["A"])
                state["G_eig"] = self.solver.eigh(state["G"])
            elif self.config.mode == "inverse":
                damp_a, damp_g = self._dampings(state, damping)
                state["A_inv"] = self._call(layer, "inverse", state["A"], damp_a).inverse
                state["G_inv"] = self._call(layer, "inverse", state["G"], damp_g).inverse

    def _active_layers(self) -> list[_Layer]:
        silent = getattr(self, "_silent", set())
        return [layer for layer in self._layers if layer.name not in silent]

    def _precondition(self) -> dict[int, Tensor]:
        """Preconditioned direction per parameter (id -> tensor), before lr and momentum."""
        group = self.param_groups[0]
        damping, wd = group["damping"], group["weight_decay"]
        directions: dict[int, Tensor] = {}
        kl_sum = 0.0
        preconditioned: list[tuple[nn.Module, Tensor]] = []
        for layer in self._active_layers():
            module = layer.module
            grad = L.gradient_matrix(module)
            if grad is None:
                continue
            if wd:
                grad = grad + wd * L.parameter_matrix(module)
            state = self.state[module.weight]
            if "A" not in state:  # no statistics yet for this layer: first-order
                update = grad
            else:
                update = self._precondition_layer(layer, state, grad, damping)
            kl_sum += float((update * grad).sum())
            preconditioned.append((module, update))
        scale = 1.0
        kl_clip, lr = group["kl_clip"], group["lr"]
        if kl_clip is not None and kl_sum * lr**2 > kl_clip:
            scale = math.sqrt(kl_clip / (kl_sum * lr**2))
        self._kl_scale = scale
        for module, update in preconditioned:
            for p, u in L.split_update(module, update * scale if scale != 1.0 else update):
                directions[id(p)] = u
        return directions

    def _precondition_layer(self, layer: _Layer, state: dict[str, Any], grad: Tensor, damping: float) -> Tensor:
        if self.config.damping_mode == "eigenbasis":
            (ev_a, q_a), (ev_g, q_g) = state["A_eig"], state["G_eig"]
            rotated = q_g.mT @ grad @ q_a
            rotated = rotated / (ev_g.clamp_min(0)[:, None] * ev_a.clamp_min(0)[None, :] + damping)
            return q_g @ rotated @ q_a.mT
        if self.config.mode == "inverse":
            return state["G_inv"] @ grad @ state["A_inv"]
        damp_a, damp_g = self._dampings(state, damping)
        out_g = self._call(layer, "solve", state["G"], grad, damp_g, x0=state.get("warm_G"))
        out_a = self._call(layer, "solve", state["A"], out_g.x.mT.contiguous(), damp_a, x0=state.get("warm_A"))
        if out_g.state is not None:
            state["warm_G"], state["warm_A"] = out_g.state, out_a.state
        return out_a.x.mT

    def _apply(self, directions: dict[int, Tensor]) -> None:
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            first_order = group.get("kind") == "first_order"
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = directions.get(id(p))
                if direction is None:  # first-order group, or a layer without statistics
                    direction = p.grad + wd * p if wd else p.grad
                elif first_order:
                    raise AssertionError("a first-order parameter got a K-FAC direction")
                if momentum:
                    direction = heavy_ball(self.state[p], direction, momentum)
                p.add_(direction, alpha=-lr)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["kfac"] = {
            "step": self._step_count,
            "generator": self._generator.get_state(),
            "silent": sorted(getattr(self, "_silent", set())),
            "checked_hooks": self._checked_hooks,
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("kfac", None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self._step_count = int(extra["step"])
            self._generator.set_state(extra["generator"])
            self._silent = set(extra["silent"])
            self._checked_hooks = bool(extra["checked_hooks"])

    def kfac_matrix(self, layer_name: str) -> Tensor:
        """The layer's undamped curvature ``G (x) A`` (row-major ``[W | b]`` vectorization):
        for tests and inspection (``d_out d_in`` squared memory)."""
        for layer in self._layers:
            if layer.name == layer_name:
                state = self.state[layer.module.weight]
                if "A" not in state:
                    raise UnsupportedConfigurationError(f"layer {layer_name!r} has no factors yet: take a step first")
                return torch.kron(state["G"], state["A"])
        raise UnsupportedConfigurationError(f"no registered layer {layer_name!r}; known: {[l.name for l in self._layers]}")

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self._layers]


def _layer_params(module: nn.Module) -> list[nn.Parameter]:
    return [module.weight] + ([module.bias] if module.bias is not None else [])
