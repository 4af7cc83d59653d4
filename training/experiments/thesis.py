"""What the thesis reports in chapter 4 (seed text), for the side-by-side comparison.

Table 4.1 (NVIDIA A40, Adam 1e-3, batch 64, 100 epochs): backward pass time in minutes and test
accuracy in %. The DEQ column has CIFAR-10 only. Fig 4.1, 4.3 and 4.4 are given as pictures and
prose; the claims below are the prose's.
"""

from __future__ import annotations

TABLE_41 = {
    "hardware": "NVIDIA A40 (thesis §4)",
    "cifar10": {
        "dynalay": {"backward_minutes": 87, "accuracy": 0.92},
        "plain": {"backward_minutes": 120, "accuracy": 0.88},
        "deq_solver": {"backward_minutes": 600, "accuracy": 0.91},
    },
    "cifar100": {
        "dynalay": {"backward_minutes": 90, "accuracy": 0.85},
        "plain": {"backward_minutes": 140, "accuracy": 0.82},
    },
}

FIG_41 = {
    "claim": "straight ('no layer') is chosen most often; loop_l1 about 25% and loop_l1_l2 about "
    "20% of the time; loop_all least",
    "loop_l1": 0.25,
    "loop_l1_l2": 0.20,
}

FIG_43A = "the mean reward stabilises as training goes on, for every seed"
FIG_43B = "a higher cost weight pushes the agent to cheaper actions without hurting accuracy"
FIG_44 = "more layers with FPI give lower test loss and higher accuracy: Model 3 best"
