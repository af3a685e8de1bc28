"""Run by test_validation.py in a fresh process with Taichi debug mode on.

(No ``from __future__ import annotations`` here: Taichi reads kernel annotations as objects.)

A stepper whose first kernel scales its input state in place breaks Taichi's global
data access rule: its reverse step re-reads the overwritten value. Without validation
the gradient is silently wrong; with ``Tape(validate=True)`` the step fails loudly.
"""


import sys

import numpy as np
import taichi as ti

import diffsim
from diffsim import StoreAll, TaichiStepper, Tape

diffsim.init("cpu", "f64", debug=True)


@ti.kernel
def scale_in_place(x: ti.template(), w: ti.template(), src: ti.i32):
    for i in range(w.shape[0]):
        x[src, i] = x[src, i] * w[i]  # the bug: overwrites the step's input


@ti.kernel
def sine_next(x: ti.template(), src: ti.i32, dst: ti.i32):
    for i in range(x.shape[1]):
        x[dst, i] = ti.sin(x[src, i])


@ti.kernel
def record(x: ti.template(), y: ti.template(), slot: ti.i32, t: ti.i32):
    for i in range(x.shape[1]):
        y[t, i] = x[slot, i]


class InPlace(TaichiStepper):
    def __init__(self, w: np.ndarray, steps: int) -> None:
        super().__init__(steps=steps)
        self.x = self._state("x", (w.size,))
        self.w = self._param("w", (w.size,))
        self.y = self._output("y", (w.size,))
        self._finalize()
        self.set_param("w", w)

    def load_initial(self) -> None:
        self.x.fill(0.5)

    def substeps(self, step):
        src, dst = self.level(step), self.level(step + 1)
        return ((scale_in_place, (self.x, self.w, src)), (sine_next, (self.x, src, dst)))

    def record(self, t):
        return ((record, (self.x, self.y, self.level(t), t)),)


def loss(out):
    return 0.5 * float(np.sum(out["y"] ** 2)), {"y": out["y"]}


w0 = np.array([1.1, 0.7, 0.9])
stepper = InPlace(w0, steps=5)
_, grad = Tape(stepper, checkpoint=StoreAll()).value_and_grad(loss)
eps = 1e-6
fd = []
for i in range(3):
    e = np.zeros(3)
    e[i] = eps
    stepper.set_param("w", w0 + e)
    plus = loss(Tape(stepper).forward())[0]
    stepper.set_param("w", w0 - e)
    minus = loss(Tape(stepper).forward())[0]
    fd.append((plus - minus) / (2 * eps))
stepper.set_param("w", w0)
print("WRONG-WITHOUT-VALIDATION", float(np.max(np.abs(grad["w"] - np.array(fd)))))
try:
    Tape(stepper, checkpoint=StoreAll(), validate=True).value_and_grad(loss)
    print("NOT-DETECTED")
except diffsim.DataAccessError as exc:
    print("DETECTED", str(exc).replace("\n", " "))

# A correct stepper passes validation and gives the same gradient as without it.
sys.path.insert(0, sys.argv[1])
from conftest import chain_problem, l2_loss  # noqa: E402

from diffsim.chain import OscillatorChain  # noqa: E402

kwargs, observed = chain_problem(seed=2, steps=12)
chain = OscillatorChain(**kwargs)
plain = Tape(chain, checkpoint=StoreAll()).value_and_grad(l2_loss(observed))[1]
checked = Tape(chain, checkpoint=StoreAll(), validate=True).value_and_grad(l2_loss(observed))[1]
print("CHAIN-VALID", max(float(np.max(np.abs(plain[k] - checked[k]))) for k in plain))
