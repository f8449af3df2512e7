"""GPU probes for scripts/gpu_check.sh: the fused Adam step's memory bandwidth, and whether
a whole training step can be captured as a CUDA graph.

    python scripts/gpu_probes.py OUT_DIR        # writes OUT_DIR/probes.json, prints a summary

* **Adam bandwidth**: one fused Adam update over 2^26 float32 parameters reads p, g, m, v and
  writes p, m, v: 7 x 4 bytes per parameter. Timed with CUDA events over 20 steps after a
  warm-up, against the device's peak (2 x memory clock x bus width).
* **CUDA graph**: a training step of the reference network (784-128-128-128-10, batch 64)
  recorded with stream capture; CuPy's ``matmul`` is expected to refuse capture (cuBLAS
  handles are not capture-safe through it), and the probe reports what happened.

Without CuPy or a GPU it says so and exits 0.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

ADAM_PARAMETERS = 2**26
ADAM_STEPS = 20
BYTES_PER_PARAMETER = 7 * 4  # read p, g, m, v; write p, m, v (float32)


def adam_bandwidth(cupy: Any) -> dict[str, Any]:
    import fastmlp

    backend = fastmlp.get_backend("cuda")
    params = cupy.zeros(ADAM_PARAMETERS, dtype=cupy.float32)
    grads = cupy.full(ADAM_PARAMETERS, 1e-3, dtype=cupy.float32)
    optimizer = fastmlp.optim.create("adam", lr=1e-3)
    optimizer.step(params, grads, backend)  # warm-up: compile, allocate the state
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(ADAM_STEPS):
        optimizer.step(params, grads, backend)
    stop.record()
    stop.synchronize()
    seconds = cupy.cuda.get_elapsed_time(start, stop) / 1e3 / ADAM_STEPS
    achieved = BYTES_PER_PARAMETER * ADAM_PARAMETERS / seconds
    properties = cupy.cuda.runtime.getDeviceProperties(0)
    # memoryClockRate in kHz, memoryBusWidth in bits; x2 for double data rate
    peak = 2 * properties["memoryClockRate"] * 1e3 * properties["memoryBusWidth"] / 8
    return {
        "parameters": ADAM_PARAMETERS,
        "step_microseconds": seconds * 1e6,
        "achieved_GB_per_s": achieved / 1e9,
        "peak_GB_per_s": peak / 1e9,
        "share_of_peak": achieved / peak,
    }


def graph_capture(cupy: Any) -> dict[str, Any]:
    import numpy as np

    import fastmlp

    backend = fastmlp.get_backend("cuda")
    model = fastmlp.MLP(784, (128, 128, 128), 10, device=backend, seed=0)
    optimizer = fastmlp.optim.create("adam", lr=1e-3)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((64, 784), dtype=np.float32))
    y = backend.asarray(rng.integers(0, 10, size=64))

    def step() -> None:
        model.loss_and_grad(x, y)
        optimizer.step(model.params, model.grads, backend)

    step()  # warm-up outside the capture: compile every kernel, make every buffer
    backend.synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    try:
        with stream:
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
    except Exception as error:  # what refuses capture is the finding
        return {"captured": False, "error": f"{type(error).__name__}: {error}"}
    return {"captured": True}


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:
        print(f"no CUDA GPU usable with CuPy here ({error}): no probes run")
        return 0
    results: dict[str, Any] = {}
    for name, probe in (("adam_bandwidth", adam_bandwidth), ("graph_capture", graph_capture)):
        try:
            results[name] = probe(cupy)
        except Exception:
            results[name] = {"failed": traceback.format_exc()}
        print(f"{name}: {json.dumps(results[name])[:400]}")
    (out / "probes.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any("failed" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check")))
