"""Entry point: `python -m training {fit,evaluate,report}`.

Examples
    # seconds-long smoke run on synthetic data (what the tests do)
    python -m training fit --dry-run --out /tmp/dry
    # the embedded default on 2 CPU cores (recipe in training/recipes/, "cpu")
    python -m training fit --preset cpu --dataset cifar10 --data-dir data --out checkpoints/cifar10
    # the thesis recipe (Adam 1e-3, batch 64, 20+20+60 epochs, α=0.5 β=0.3 γ=0.2)
    python -m training fit --dataset cifar10 --data-dir data --out checkpoints/cifar10-thesis
    # several GPUs (gradients averaged over ranks, rank 0 writes)
    torchrun --standalone --nproc_per_node=4 -m training fit --dataset cifar10 --data-dir data \
        --out checkpoints/cifar10
    python -m training evaluate checkpoints/cifar10 --data-dir data --split test
    python -m training report checkpoints/cifar10 runs/cifar10-seed0 runs/cifar10-seed1
"""

import sys

from training.cli import main

sys.exit(main())
