"""Per-element formulas: written once as a scalar Python function, compiled for every backend.

An activation, its derivative and an optimizer update are each a formula: a plain Python
function of scalars, in a small subset of Python that every backend can compile::

    def adam(p, g, m, v, *, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
             bias_correction2_sqrt):
        m = m * beta1 + g * one_minus_beta1
        v = v * beta2 + (g * g) * one_minus_beta2
        p = p - (m / (sqrt(v) / bias_correction2_sqrt + eps)) * step_size
        return p, m, v

Positional parameters are arrays (one element each), keyword-only ones are scalars (the
same for every element). The body is assignments and one ``return``: of array parameters,
which are then updated in place (``return p, m, v``), or of one expression, the value of a
new output array (``return z if z > 0 else slope * z``). Expressions use ``+ - * /``, unary
``-``, comparisons, ``a if test else b`` and the functions of :data:`FUNCTIONS`
(``exp``, ``expm1``, ``log``, ``log1p``, ``sqrt``, ``tanh``, ``erf``, ``abs``), written bare
or as ``math.exp``...

From one formula, :class:`Formula` gives

* :meth:`Formula.evaluate` -- a reference evaluation written against an array module
  (NumPy or CuPy); allocates, it is the specification;
* :meth:`Formula.plan` -- a sequence of NumPy ``out=`` ufunc calls over reusable scratch
  buffers, in the formula's order of operations (no allocation per call);
* :func:`numba_source` -- the source of a compiled loop (one pass over the arrays);
* :meth:`Formula.c_body` -- the body of a CuPy ``ElementwiseKernel``.

All four evaluate the same operations in the same order in the arrays' precision (numeric
literals and scalars are rounded once to the array dtype, as NumPy does), so results agree
bit for bit where no transcendental function is involved (``exact``), and to rounding
otherwise (libraries differ in the last bit of ``exp``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# name in a formula -> (NumPy / CuPy function name, C function name)
FUNCTIONS: dict[str, tuple[str, str]] = {
    "exp": ("exp", "exp"),
    "expm1": ("expm1", "expm1"),
    "log": ("log", "log"),
    "log1p": ("log1p", "log1p"),
    "sqrt": ("sqrt", "sqrt"),
    "tanh": ("tanh", "tanh"),
    "erf": ("erf", "erf"),
    "abs": ("abs", "fabs"),
}
# Functions that every library rounds correctly (so results stay bit-identical).
EXACT_FUNCTIONS = frozenset({"sqrt", "abs"})

_BINARY = {ast.Add: ("+", "add"), ast.Sub: ("-", "subtract"), ast.Mult: ("*", "multiply"),
           ast.Div: ("/", "divide")}  # fmt: skip
_COMPARE = {ast.Gt: (">", "greater"), ast.GtE: (">=", "greater_equal"), ast.Lt: ("<", "less"),
            ast.LtE: ("<=", "less_equal"), ast.Eq: ("==", "equal"),
            ast.NotEq: ("!=", "not_equal")}  # fmt: skip


class FormulaError(ValueError):
    """A formula uses Python beyond the subset every backend compiles; says where."""


@dataclass(frozen=True)
class Node:
    """One operation of a formula: ``kind`` is "array", "scalar", "constant", "binary",
    "negate", "compare", "select" or "call"; ``args`` its operand nodes."""

    kind: str
    args: tuple[Node, ...] = ()
    name: str = ""  # array / scalar name, operator symbol, function name
    value: float = 0.0  # a constant's value


@dataclass(frozen=True, eq=False)
class Formula:
    """A per-element formula (see the module docstring), parsed and checked.

    ``arrays``: the array parameters in order; ``scalars``: the keyword-only parameters;
    ``updates``: the arrays updated in place (``return p, m, v``), or empty when the
    formula returns one new value (``result``).
    """

    name: str
    arrays: tuple[str, ...]
    scalars: tuple[str, ...]
    statements: tuple[tuple[str, Node], ...]
    updates: tuple[str, ...] = ()
    result: Node | None = None
    function: Callable[..., Any] | None = field(default=None, compare=False)

    # Compared and hashed by identity: a formula is made once (per declaration) and kernels
    # are cached per formula, so looking one up must not walk its expression trees.

    @cached_property
    def exact(self) -> bool:
        """Whether every backend computes this formula bit for bit alike."""
        return self.function_names <= EXACT_FUNCTIONS

    @cached_property
    def may_overflow(self) -> bool:
        """Whether the formula calls a function that overflows for ordinary inputs
        (``exp(z)`` for large z, where the formula is designed to take the inf)."""
        return bool(self.function_names & {"exp", "expm1"})

    @cached_property
    def function_names(self) -> frozenset[str]:
        """The functions of :data:`FUNCTIONS` the formula calls."""
        return frozenset(node.name for node in self.nodes() if node.kind == "call")

    def nodes(self) -> Iterator[Node]:
        """Every node of the formula's expressions, depth first, in order of appearance."""
        stack = [node for _, node in self.statements]
        if self.result is not None:
            stack.append(self.result)
        stack.reverse()
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.args))

    def outputs(self) -> tuple[str, ...]:
        """Names of what the formula writes: its updated arrays, or ``("out",)``."""
        return self.updates or ("out",)

    # ------------------------------------------------------------- reference

    def evaluate(self, xp: Any, arrays: Sequence[Any], scalars: dict[str, float],
                 functions: dict[str, Callable[..., Any]] | None = None) -> list[Any]:  # fmt: skip
        """The formula on whole arrays with ``xp`` (allocating); returns the output values.

        ``functions`` overrides entries of ``xp`` (an ``erf`` where ``xp`` has none).
        """
        dtype = arrays[0].dtype
        env: dict[str, Any] = dict(zip(self.arrays, arrays))
        calls = {name: getattr(xp, spelled, None) for name, (spelled, _) in FUNCTIONS.items()}
        calls.update(functions or {})

        def value(node: Node) -> Any:
            if node.kind == "array":
                return env[node.name]
            if node.kind == "scalar":
                return dtype.type(scalars[node.name])
            if node.kind == "constant":
                return dtype.type(node.value)
            if node.kind == "negate":
                return -value(node.args[0])
            if node.kind == "binary":
                return getattr(xp, _ufunc(node.name))(value(node.args[0]), value(node.args[1]))
            if node.kind == "compare":
                return getattr(xp, _ufunc(node.name))(value(node.args[0]), value(node.args[1]))
            if node.kind == "select":
                test, when_true, when_false = (value(arg) for arg in node.args)
                return xp.where(test, when_true, when_false).astype(dtype, copy=False)
            return calls[node.name](value(node.args[0]))

        for target, node in self.statements:
            env[target] = value(node)
        if self.result is not None:
            return [value(self.result)]
        return [env[name] for name in self.updates]

    # ---------------------------------------------------------- NumPy plan

    def plan(self) -> Plan:
        """The formula as NumPy ``out=`` ufunc calls over reusable scratch buffers."""
        return Plan.compile(self)

    # ----------------------------------------------------------- C and Numba

    def c_body(self, out: str = "out") -> str:
        """The body of a CuPy ElementwiseKernel: arrays and scalars by their names, locals
        declared as ``T``, updated arrays assigned in place, a returned value to ``out``."""
        lines = []
        declared = set(self.arrays)
        for target, node in self.statements:
            prefix = "" if target in declared else "T "
            declared.add(target)
            lines.append(f"{prefix}{target} = {_c(node)};")
        if self.result is not None:
            lines.append(f"{out} = {_c(self.result)};")
        return "\n".join(lines)

    @cached_property
    def literals(self) -> tuple[float, ...]:
        """The numeric literals of the formula, each once, in order of appearance."""
        return tuple(dict.fromkeys(node.value for node in self.nodes() if node.kind == "constant"))


def _ufunc(symbol: str) -> str:
    for table in (_BINARY, _COMPARE):
        for spelled, name in table.values():
            if spelled == symbol:
                return name
    raise KeyError(symbol)


def _c(node: Node) -> str:
    if node.kind in ("array", "scalar"):
        return node.name
    if node.kind == "constant":
        return f"(T){node.value!r}"
    if node.kind == "negate":
        return f"(-{_c(node.args[0])})"
    if node.kind in ("binary", "compare"):
        return f"({_c(node.args[0])} {node.name} {_c(node.args[1])})"
    if node.kind == "select":
        test, when_true, when_false = (_c(arg) for arg in node.args)
        return f"({test} ? {when_true} : {when_false})"
    return f"{FUNCTIONS[node.name][1]}({_c(node.args[0])})"


def _rename(node: Node, names: dict[str, str]) -> Node:
    if node.kind == "array":
        return Node("array", name=names.get(node.name, node.name))
    if not node.args:
        return node
    return Node(node.kind, tuple(_rename(arg, names) for arg in node.args), node.name, node.value)


def _inlined(inner: Formula, argument: str, prefix: str) -> tuple[list[tuple[str, Node]], Node]:
    """``inner``'s statements and result with its one array read from ``argument`` and its
    locals renamed ``prefix + name`` (so they cannot clash with the caller's names)."""
    names = {inner.arrays[0]: argument}
    statements = []
    for target, node in inner.statements:
        renamed = _rename(node, names)
        names[target] = prefix + target
        statements.append((prefix + target, renamed))
    assert inner.result is not None
    return statements, _rename(inner.result, names)


def with_bias(activation: Formula, keep_input: bool) -> Formula:
    """The fused forward kernel of a layer: ``z = z + b`` then the activation.

    ``keep_input`` False: ``z = f(z + b)`` in place (arrays z, b). True: ``z = z + b`` and
    ``out = f(z)`` (arrays z, b, out), for activations whose gradient needs z.
    """
    body, value = _inlined(activation, "z", "f_")
    statements: list[tuple[str, Node]] = [
        ("z", Node("binary", (Node("array", name="z"), Node("array", name="b")), name="+")),
        *body,
    ]
    if keep_input:
        statements.append(("out", value))
        arrays, updates = ("z", "b", "out"), ("z", "out")
    else:
        statements.append(("z", value))
        arrays, updates = ("z", "b"), ("z",)
    return Formula(f"bias_{activation.name}", arrays, activation.scalars, tuple(statements),
                   updates=updates)  # fmt: skip


def in_place(backward: Formula) -> Formula:
    """``delta = backward(delta, x)`` in place: the activation-gradient kernel."""
    assert backward.result is not None
    statements = (*backward.statements, (backward.arrays[0], backward.result))
    return Formula(f"{backward.name}_in_place", backward.arrays, backward.scalars, statements,
                   updates=(backward.arrays[0],))  # fmt: skip


def _scalars_to_arrays(node: Node) -> Node:
    if node.kind == "scalar":
        return Node("array", name=node.name)
    if not node.args:
        return node
    args = tuple(_scalars_to_arrays(arg) for arg in node.args)
    return Node(node.kind, args, node.name, node.value)


@functools.cache
def scalars_as_arrays(formula: Formula) -> Formula:
    """``formula`` with each scalar made an array read after its own arrays (same names, same
    operations in the same order): run with ``row_vectors=formula.scalars`` on 2-D arrays,
    each column gets its own scalars. A stack of K models runs one optimizer kernel this way,
    each model's hyperparameters repeated over its columns (``run_formula_per_model_``). Made
    once per formula (kernels are cached per formula object)."""
    statements = tuple((target, _scalars_to_arrays(node)) for target, node in formula.statements)
    result = None if formula.result is None else _scalars_to_arrays(formula.result)
    return Formula(f"{formula.name}_per_column", (*formula.arrays, *formula.scalars), (),
                   statements, formula.updates, result)  # fmt: skip


# ------------------------------------------------------------------- Numba


def numba_per_model_source(formula: Formula) -> str:
    """A module defining ``kernel(starts, rows, widths, tables, values, constants...,
    arrays...)``: one compiled loop over every group of a stack of K models. The arrays are
    1-D of one length (the flat parameters and their companions); group g is the range
    starting at ``starts[g]`` viewed as (``rows[g]``, K * ``widths[g]``), model k's entries
    in columns [k * width, (k + 1) * width); ``values[tables[g], s, k]`` is scalar s of
    model k for group g. Each model's scalars are read once per row, then its columns run
    as one contiguous inner loop (an unsigned index: no negative index to wrap around, so
    LLVM vectorises it as a single model's loop). Every group's range, table and width is
    checked against the arrays first (a ValueError, never an out-of-bounds access)."""
    constants = {value: f"c{index}" for index, value in enumerate(formula.literals)}
    first = formula.arrays[0]
    # the kernel's own names start with q_ (formula arrays and scalars are plain names,
    # formula locals v_...): none can clash
    params = ["q_starts", "q_rows", "q_widths", "q_tables", "q_values", *constants.values(),
              *formula.arrays]  # fmt: skip
    lines = ["import math", "", "import numpy as np", "from numba import njit", "", "",
             '@njit(cache=True, nogil=True, error_model="numpy")',
             f"def kernel({', '.join(params)}):"]  # fmt: skip
    checks = [f"{name}.shape != {first}.shape" for name in formula.arrays[1:]]
    checks += [f"{name}.shape != q_starts.shape" for name in ("q_rows", "q_widths", "q_tables")]
    checks.append(f"q_values.shape[1] != {len(formula.scalars)}")
    lines += [
        f"    if {' or '.join(checks)}:",
        '        raise ValueError("formula kernel: arrays of mismatched shapes")',
        "    q_models = q_values.shape[2]",
        "    for q_group in range(q_starts.shape[0]):",
        "        q_start, q_width = q_starts[q_group], q_widths[q_group]",
        "        q_table, q_count = q_tables[q_group], q_rows[q_group]",
        "        q_columns = q_models * q_width",
        "        if (q_start < 0 or q_count < 0 or q_width < 1 or q_table < 0",
        "                or q_table >= q_values.shape[0]",
        f"                or q_start + q_count * q_columns > {first}.shape[0]):",
        '            raise ValueError("formula kernel: a group outside the arrays")',
        "        for q_row in range(q_count):",
        "            for q_k in range(q_models):",
    ]
    lines += [f"                {name} = q_values[q_table, {index}, q_k]"
              for index, name in enumerate(formula.scalars)]  # fmt: skip
    lines += [
        "                q_offset = q_start + q_row * q_columns + q_k * q_width",
        "                for q_j in range(q_width):",
        "                    q_i = np.uint64(q_offset + q_j)",
    ]
    lines += _element_lines(formula, " " * 20, dict.fromkeys(formula.arrays, "q_i"), constants)
    return "\n".join(lines) + "\n"


def numba_source(formula: Formula, ndim: int, row_vectors: tuple[str, ...] = ()) -> str:
    """A module defining ``kernel(scalars..., constants..., arrays...)``: one compiled loop
    over the formula's arrays, updating them in place (arrays last, so that
    ``functools.partial(kernel, *scalars, *constants)`` is a kernel of the arrays alone).

    Arrays are 1-D of one length (``ndim`` 1), or 2-D of one shape with ``row_vectors``
    1-D of one entry per column (``ndim`` 2; a bias broadcast over the rows). The kernel
    checks the shapes (a ValueError, never an out-of-bounds access). Scalars and numeric
    literals are passed in the arrays' dtype, so float32 arithmetic stays float32.
    """
    constants = {value: f"c{index}" for index, value in enumerate(formula.literals)}
    full = [name for name in formula.arrays if name not in row_vectors]
    two_d = ndim == 2
    params = [*formula.scalars, *constants.values(), *formula.arrays]
    first = full[0]
    lines = [
        "import math",
        "",
        "from numba import njit",
        "",
        "",
        '@njit(cache=True, nogil=True, error_model="numpy")',
        f"def kernel({', '.join(params)}):",
    ]
    checks = [f"{name}.shape != {first}.shape" for name in full[1:]]
    checks += [f"{name}.shape[0] != {first}.shape[1]" for name in row_vectors]
    if checks:
        lines.append(f"    if {' or '.join(checks)}:")
        lines.append('        raise ValueError("formula kernel: arrays of mismatched shapes")')
    if two_d:
        lines += [f"    for row in range({first}.shape[0]):",
                  f"        for col in range({first}.shape[1]):"]  # fmt: skip
        indent = " " * 12
        index = {name: "col" if name in row_vectors else "row, col" for name in formula.arrays}
    else:
        lines.append(f"    for i in range({first}.shape[0]):")
        indent = " " * 8
        index = dict.fromkeys(formula.arrays, "i")
    lines += _element_lines(formula, indent, index, constants)
    return "\n".join(lines) + "\n"


def _element_lines(
    formula: Formula, indent: str, index: dict[str, str], constants: dict[float, str]
) -> list[str]:
    """A compiled loop's body for one element: read the arrays it reads (``name[index]``)
    into locals ``v_name``, evaluate the statements, write the updated arrays back."""
    names = {name: f"v_{name}" for name in formula.arrays}
    read = _read_names(formula)
    lines = [f"{indent}{names[name]} = {name}[{index[name]}]" for name in formula.arrays
             if name in read]  # fmt: skip
    local = dict(names)
    for target, node in formula.statements:
        local.setdefault(target, f"v_{target}")
        lines.append(f"{indent}{local[target]} = {_numba(node, local, constants)}")
    lines += [f"{indent}{name}[{index[name]}] = {local[name]}" for name in formula.updates]
    return lines


def _read_names(formula: Formula) -> set[str]:
    """Arrays whose incoming values the formula reads."""
    read: set[str] = set()
    assigned: set[str] = set()
    for target, node in formula.statements:
        read |= {name for name in _leaves(node) if name not in assigned}
        assigned.add(target)
    return read & set(formula.arrays)


def _numba(node: Node, local: dict[str, str], constants: dict[float, str]) -> str:
    if node.kind == "array":
        return local[node.name]
    if node.kind == "scalar":
        return node.name
    if node.kind == "constant":
        return constants[node.value]
    if node.kind == "negate":
        return f"(-{_numba(node.args[0], local, constants)})"
    if node.kind in ("binary", "compare"):
        left, right = (_numba(arg, local, constants) for arg in node.args)
        return f"({left} {node.name} {right})"
    if node.kind == "select":
        test, when_true, when_false = (_numba(arg, local, constants) for arg in node.args)
        return f"({when_true} if {test} else {when_false})"
    function = "abs" if node.name == "abs" else f"math.{node.name}"
    return f"{function}({_numba(node.args[0], local, constants)})"


# ------------------------------------------------------------------- parsing


def formula(function: Callable[..., Any]) -> Formula:
    """Parse ``function`` (see the module docstring) into a :class:`Formula`."""
    source = textwrap.dedent(inspect.getsource(function))
    tree = ast.parse(source)
    definition = next(node for node in tree.body if isinstance(node, ast.FunctionDef))
    where = f"formula {function.__qualname__}"
    arguments = definition.args
    if arguments.vararg or arguments.kwarg or arguments.posonlyargs or arguments.defaults:
        raise FormulaError(f"{where}: use plain positional arrays and keyword-only scalars")
    arrays = tuple(arg.arg for arg in arguments.args)
    scalars = tuple(arg.arg for arg in arguments.kwonlyargs)
    if not arrays:
        raise FormulaError(f"{where}: needs at least one array parameter")
    known = set(arrays) | set(scalars)
    statements: list[tuple[str, Node]] = []
    body = [stmt for stmt in definition.body if not _is_docstring(stmt)]
    for stmt in body[:-1]:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):  # fmt: skip
            raise FormulaError(f"{where}, line {stmt.lineno}: only `name = expression` here")
        target = stmt.targets[0].id
        if target in scalars:
            raise FormulaError(f"{where}, line {stmt.lineno}: scalar {target!r} is read-only")
        statements.append((target, _node(stmt.value, known, scalars, where)))
        known.add(target)
    last = body[-1] if body else None
    if not isinstance(last, ast.Return) or last.value is None:
        raise FormulaError(f"{where}: must end with a return")
    returned = last.value.elts if isinstance(last.value, ast.Tuple) else [last.value]
    names = [item.id for item in returned if isinstance(item, ast.Name)]
    assigned = {target for target, _ in statements}
    if len(names) == len(returned) and all(name in arrays and name in assigned for name in names):
        return Formula(function.__name__, arrays, scalars, tuple(statements),
                       updates=tuple(names), function=function)  # fmt: skip
    if len(returned) != 1:
        raise FormulaError(f"{where}: return updated arrays by name, or one expression")
    for target, _ in statements:
        if target in arrays:
            raise FormulaError(
                f"{where}: assigns array {target!r} but returns a new value; use a new name"
            )
    result = _node(returned[0], known, scalars, where)
    return Formula(function.__name__, arrays, scalars, tuple(statements), result=result,
                   function=function)  # fmt: skip


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


def _node(expr: ast.expr, known: set[str], scalars: tuple[str, ...], where: str) -> Node:
    def build(item: ast.expr) -> Node:
        if isinstance(item, ast.Name):
            if item.id not in known:
                raise FormulaError(f"{where}, line {item.lineno}: unknown name {item.id!r}")
            return Node("scalar" if item.id in scalars else "array", name=item.id)
        if isinstance(item, ast.Constant) and isinstance(item.value, (int, float)):
            if isinstance(item.value, bool):
                raise FormulaError(f"{where}, line {item.lineno}: no booleans")
            return Node("constant", value=float(item.value))
        if isinstance(item, ast.BinOp) and type(item.op) in _BINARY:
            return Node("binary", (build(item.left), build(item.right)),
                        name=_BINARY[type(item.op)][0])  # fmt: skip
        if isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub):
            return Node("negate", (build(item.operand),))
        if isinstance(item, ast.Compare) and len(item.ops) == 1 and type(item.ops[0]) in _COMPARE:
            return Node("compare", (build(item.left), build(item.comparators[0])),
                        name=_COMPARE[type(item.ops[0])][0])  # fmt: skip
        if isinstance(item, ast.IfExp):
            test = build(item.test)
            if test.kind != "compare":
                raise FormulaError(f"{where}, line {item.lineno}: the test must be a comparison")
            return Node("select", (test, build(item.body), build(item.orelse)))
        if isinstance(item, ast.Call) and len(item.args) == 1 and not item.keywords:
            function = item.func
            name = (
                function.attr
                if isinstance(function, ast.Attribute)
                and isinstance(function.value, ast.Name)
                and function.value.id == "math"
                else getattr(function, "id", None)
            )
            if name in FUNCTIONS:
                return Node("call", (build(item.args[0]),), name=name)
        raise FormulaError(
            f"{where}, line {getattr(item, 'lineno', '?')}: {ast.unparse(item)!r} is outside "
            "the formula language (+ - * /, comparisons, a if test else b, "
            f"{', '.join(FUNCTIONS)})"
        )

    return build(expr)


# --------------------------------------------------------------- NumPy plan


@dataclass(frozen=True)
class Step:
    """One ufunc call of a plan: ``function`` applied to ``operands`` into slot ``out``.

    Operands are ("array", i), ("slot", k), ("scalar", name) or ("constant", value); a
    "select" is a copy of ``when_false`` into out, then a "copy_where" step, operands
    (``when_true``, test, a "bits" slot), that puts ``when_true`` where the test holds
    (:func:`_copy_where_lines`).
    """

    function: str
    operands: tuple[tuple[str, Any], ...]
    out: int


@dataclass
class Plan:
    """A formula as NumPy ufunc calls with ``out=``: slots are the output arrays (the
    updated arrays, or the new ``out``) and scratch buffers, reused as soon as a value is
    no longer needed, so a plan needs few buffers and allocates nothing once they exist."""

    formula: Formula
    steps: list[Step]
    slot_kinds: list[str]  # "float", "bool" or "bits" per scratch slot

    @classmethod
    def compile(cls, formula: Formula) -> Plan:
        return _PlanBuilder(formula).build()

    @cached_property
    def callees(self) -> list[str]:
        """The NumPy functions the steps call, in order of first use: the ``f`` parameters
        of :attr:`function` (``copyto`` for copies)."""
        return list(dict.fromkeys(name for step in self.steps for name in _callees(step)))

    @cached_property
    def literals(self) -> list[float]:
        """The constants the steps read, in order of first use: the ``c`` parameters."""
        values = [value for step in self.steps for kind, value in step.operands
                  if kind == "constant"]  # fmt: skip
        return list(dict.fromkeys(values))

    @cached_property
    def source(self) -> str:
        """The plan as the straight-line Python function that runs it: one ufunc call per
        step, no per-step interpretation (``f`` functions, ``t`` the formula's arrays and
        ``out``, ``b`` scratch buffers, ``k`` scalars, ``c`` constants)."""
        callees, literals = self.callees, self.literals
        targets = len(self.formula.arrays) + (self.formula.result is not None)
        names = [f"f{i}" for i in range(len(callees))]
        names += [f"t{i}" for i in range(targets)]
        names += [f"b{i}" for i in range(len(self.slot_kinds))]
        names += [f"k{i}" for i in range(len(self.formula.scalars))]
        names += [f"c{i}" for i in range(len(literals))]

        def operand(kind: str, value: Any) -> str:
            if kind == "array":
                return f"t{value}"
            if kind == "slot":
                return f"b{value}"
            if kind == "scalar":
                return f"k{self.formula.scalars.index(value)}"
            return f"c{literals.index(value)}"

        def call(function: str) -> str:
            return f"f{callees.index(function)}"

        lines = [f"def plan({', '.join(names)}):"]
        for step in self.steps:
            destination = f"t{-(step.out + 1)}" if step.out < 0 else f"b{step.out}"
            values = [operand(kind, value) for kind, value in step.operands]
            if step.function == "copy":
                lines.append(f"    {call('copyto')}({destination}, {values[0]})")
            elif step.function == "copy_where":
                lines += _copy_where_lines(step, destination, values, call)
            else:
                lines.append(f"    {call(step.function)}({', '.join(values)}, out={destination})")
        if not self.steps:
            lines.append("    pass")
        return "\n".join(lines) + "\n"

    @cached_property
    def function(self) -> Callable[..., None]:
        """:attr:`source`, compiled: ``function(*callees, *arrays, *scratch, *scalars,
        *literals)`` runs the plan, every value in the arrays' dtype; updated arrays are
        written in place, each scratch buffer has the arrays' shape and the dtype of its
        ``slot_kinds`` entry ("float": the arrays' dtype, "bool", "bits": int8)."""
        namespace: dict[str, Any] = {}
        exec(compile(self.source, f"<plan of {self.formula.name}>", "exec"), namespace)
        return namespace["plan"]


def _callees(step: Step) -> tuple[str, ...]:
    """The NumPy functions a step calls: ``copyto`` for a copy, the bitwise blend's for a
    masked copy (:func:`_copy_where_lines`), else the step's ufunc."""
    if step.function == "copy_where":
        return ("subtract", "bitwise_and") if _is_positive_zero(step.operands[0]) else (
            "subtract", "bitwise_xor", "bitwise_and")  # fmt: skip
    return ("copyto",) if step.function == "copy" else (step.function,)


def _is_positive_zero(operand: tuple[str, Any]) -> bool:
    kind, value = operand
    return kind == "constant" and value == 0 and math.copysign(1.0, value) > 0


def _copy_where_lines(
    step: Step, destination: str, values: list[str], call: Callable[[str], str]
) -> list[str]:
    """The source lines of a masked copy ``out = value where test``: a blend of the bit
    patterns, exact like a copy (NaN payloads, signed zeros) and branch-free. NumPy's masked
    copies (``copyto(where=)``, ``putmask``) branch per element: on a ReLU's random mask
    they took 490 us for 131,072 float32 where the four passes below take ~45 us."""
    value, test, keep = values
    lines = [
        # the bit patterns of out as signed integers of their item size
        f"    _bits = {destination}.view('i%d' % {destination}.itemsize)",
        # keep = test - 1 in bytes: 0xFF (-1 as int8) where test is false (keep out), 0 where
        # it is true (take value); and-ed with wider integers it is sign-extended
        f"    {call('subtract')}({test}.view('u1'), 1, out={keep}.view('u1'))",
    ]
    if _is_positive_zero(step.operands[0]):
        # out = out & keep (+0.0 has no bit set)
        return [*lines, f"    {call('bitwise_and')}(_bits, {keep}, out=_bits)"]
    return [
        *lines,
        f"    _value_bits = {value}.view(_bits.dtype)",
        # out = value ^ ((out ^ value) & keep)
        f"    {call('bitwise_xor')}(_bits, _value_bits, out=_bits)",
        f"    {call('bitwise_and')}(_bits, {keep}, out=_bits)",
        f"    {call('bitwise_xor')}(_bits, _value_bits, out=_bits)",
    ]


def _clamps(node: Node) -> Node:
    """``node`` with each ``c if x < c else x`` as ``maximum(x, c)`` and each ``c if x > c
    else x`` as ``minimum(x, c)`` (one ufunc instead of a compare and a masked copy; both
    give x where x is NaN, as the select does)."""
    args = tuple(_clamps(arg) for arg in node.args)
    if node.kind == "select":
        test, when_true, when_false = args
        if (
            test.name in ("<", ">")
            and when_true.kind == test.args[1].kind == "constant"
            and when_true.value == test.args[1].value
            and test.args[0] == when_false
        ):
            name = "maximum" if test.name == "<" else "minimum"
            return Node("clamp", (when_false, when_true), name=name)
    return Node(node.kind, args, node.name, node.value) if args != node.args else node


class _PlanBuilder:
    """Turns a formula's expression trees into ufunc steps, reusing storage.

    Storage is a scratch slot, or an array the formula writes: an updated array while its
    statement rebinds it (once its old value has no reads left), and ``out`` while the
    returned value is computed. A temporary is read once; a local lives until its last
    read. So ``m = m * beta1 + g * (1 - beta1)`` becomes ``multiply(m, beta1, out=m)``,
    ``multiply(g, ..., out=s)``, ``add(m, s, out=m)``: the hand-written sequence.
    """

    def __init__(self, formula: Formula) -> None:
        self.formula = formula
        self.statements = [(target, _clamps(node)) for target, node in formula.statements]
        self.result = None if formula.result is None else _clamps(formula.result)
        self.steps: list[Step] = []
        self.kinds: list[str] = []
        self.free: list[int] = []
        # name -> (binding number, operand holding its value)
        self.env: dict[str, tuple[int, tuple[str, Any]]] = {
            name: (index, ("array", index)) for index, name in enumerate(formula.arrays)
        }
        self.reads = self._reads()
        self.writable: tuple[str, Any] | None = None  # the array the current statement binds

    def _reads(self) -> dict[int, float]:
        """How often each binding is read; the final value of an updated array is pinned."""
        formula = self.formula
        current = {name: index for index, name in enumerate(formula.arrays)}
        reads: dict[int, float] = dict.fromkeys(current.values(), 0)
        expressions = [*self.statements]
        if self.result is not None:
            expressions.append(("", self.result))
        for number, (target, node) in enumerate(expressions):
            for name in _leaves(node):
                reads[current[name]] += 1
            if target:
                current[target] = len(formula.arrays) + number
                reads[current[target]] = 0
        for name in formula.updates:
            reads[current[name]] = math.inf
        return reads

    def _new_slot(self, kind: str) -> tuple[str, Any]:
        for position, slot in enumerate(self.free):
            if self.kinds[slot] == kind:
                return ("slot", self.free.pop(position))
        self.kinds.append(kind)
        return ("slot", len(self.kinds) - 1)

    def _release(self, storage: tuple[str, Any]) -> None:
        if storage[0] == "slot" and storage[1] not in self.free:
            self.free.append(storage[1])

    def _kind(self, storage: tuple[str, Any]) -> str:
        return self.kinds[storage[1]] if storage[0] == "slot" else "float"

    def emit(self, node: Node) -> tuple[tuple[str, Any], int | None]:
        """(operand holding ``node``'s value, the binding it reads or None for a temporary).

        A read is consumed when the operation reading it executes, not when the operand is
        found: an operand still waiting for its operation keeps its storage.
        """
        if node.kind == "array":
            binding, operand = self.env[node.name]
            return operand, binding
        if node.kind == "scalar":
            return ("scalar", node.name), -1
        if node.kind == "constant":
            return ("constant", node.value), -1
        values = [self.emit(arg) for arg in node.args]
        free = [self._consume(operand, binding) for operand, binding in values]
        kind = "bool" if node.kind == "compare" else "float"
        operands = [operand for operand, _ in values]
        if node.kind == "select":
            test, when_true, when_false = operands
            target = when_false if free[2] else self._output(kind, [])
            if target != when_false:
                self.steps.append(Step("copy", (when_false,), _out(target)))
            bits = self._new_slot("bits")
            self.steps.append(Step("copy_where", (when_true, test, bits), _out(target)))
            self._release(bits)
        else:
            candidates = [operand for operand, is_free in zip(operands, free) if is_free]
            target = self._output(kind, candidates)
            if node.kind == "negate":
                function = "negative"
            elif node.kind == "clamp":
                function = node.name
            elif node.kind == "call":
                function = FUNCTIONS[node.name][0]
            else:
                function = _ufunc(node.name)
            self.steps.append(Step(function, tuple(operands), _out(target)))
        for operand, is_free in zip(operands, free):
            if is_free and operand != target:
                self._release(operand)
        return target, None

    def _consume(self, operand: tuple[str, Any], binding: int | None) -> bool:
        """Count one read of ``operand``; whether its storage is free afterwards."""
        if binding is None:
            return operand[0] == "slot" or operand == self.writable  # a temporary
        if binding < 0:
            return False  # a scalar or a constant
        self.reads[binding] -= 1
        if self.reads[binding] > 0:
            return False
        return operand[0] == "slot" or operand == self.writable

    def _output(self, kind: str, candidates: list[tuple[str, Any]]) -> tuple[str, Any]:
        # the statement's own array first: its value then needs no copy at the end
        candidates = sorted(candidates, key=lambda operand: operand != self.writable)
        for operand in candidates:
            if self._kind(operand) == kind:
                return operand
        if kind == "float" and self.writable is not None and self.writable_free:
            self.writable_free = False
            return self.writable
        return self._new_slot(kind)

    def _statement(self, node: Node, array: tuple[str, Any] | None) -> tuple[str, Any]:
        """Emit one statement's expression; ``array``: the array it may compute into."""
        self.writable = array
        # an updated array becomes usable storage only once its old value is read no more
        self.writable_free = array is not None and array[1] >= len(self.formula.arrays)
        value, binding = self.emit(node)
        if binding is not None and binding >= 0:
            self._consume(value, binding)  # a bare name: read (and copied below)
        if array is not None and value != array:
            self.steps.append(Step("copy", (value,), _out(array)))
            self._release(value)
            value = array
        elif array is None and value[0] != "slot":
            copy = self._new_slot("float")
            self.steps.append(Step("copy", (value,), _out(copy)))
            value = copy
        self.writable = None
        return value

    def build(self) -> Plan:
        formula = self.formula
        arrays = len(formula.arrays)
        for number, (target, node) in enumerate(self.statements):
            binding = arrays + number
            array = ("array", formula.arrays.index(target)) if target in formula.updates else None
            value = self._statement(node, array)
            self.env[target] = (binding, value)
            if self.reads[binding] == 0 and value[0] == "slot":
                self._release(value)  # a local nothing reads
        if self.result is not None:
            self._statement(self.result, ("array", arrays))
        return Plan(formula, self.steps, list(self.kinds))


def _out(operand: tuple[str, Any]) -> int:
    """A step's destination: scratch slot k >= 0, or -(i + 1) for array i."""
    kind, value = operand
    return value if kind == "slot" else -(value + 1)


def _leaves(node: Node) -> list[str]:
    """The array and local names an expression reads, once per read."""
    if node.kind == "array":
        return [node.name]
    return [name for arg in node.args for name in _leaves(arg)]


_ = math  # formulas may be written with math.exp etc.; the parser reads them by name
