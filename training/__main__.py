"""Entry point: `python -m training COMMAND` (fit, evaluate, report, export-onnx, loop-study,
experiment; `python -m training --help` says what each does).

Examples
    # seconds-long smoke run on synthetic data (what the tests do)
    python -m training fit --dry-run --out /tmp/dry
    # the embedded CIFAR-10 default (`make train`): three chained fits, each --init-from the last
    python -m training fit --preset fast-deep --dataset cifar10 --data-dir data \
        --out runs/cifar10-base/ckpt --run-dir runs/cifar10-base/run --name cifar10-base
    python -m training fit --preset fast-deep-loops --dataset cifar10 --data-dir data \
        --init-from runs/cifar10-base/ckpt --out runs/cifar10-loops/ckpt
    python -m training fit --preset fast-deep-tta-agent --dataset cifar10 --data-dir data \
        --init-from runs/cifar10-loops/ckpt --name cifar10 --out checkpoints/cifar10
    # the thesis recipe (Adam 1e-3, batch 64, 20+20+60 epochs, α=0.5 β=0.3 γ=0.2)
    python -m training fit --dataset cifar10 --data-dir data --out checkpoints/cifar10-thesis
    # several GPUs (gradients averaged over ranks, rank 0 writes)
    torchrun --standalone --nproc_per_node=4 -m training fit --dataset cifar10 --data-dir data \
        --out checkpoints/cifar10
    python -m training evaluate checkpoints/cifar10 --data-dir data --split test
    python -m training report checkpoints/cifar10 runs/cifar10-seed0 runs/cifar10-seed1
    python -m training export-onnx checkpoints/cifar10
    python -m training loop-study base=runs/cifar10-base/ckpt loops=runs/cifar10-loops/ckpt \
        --data-dir data --out reports/loop-study
    python -m training experiment table41 --dry-run
"""

import sys

from training.cli import main

sys.exit(main())
