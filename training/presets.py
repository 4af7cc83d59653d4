"""Named recipes. `thesis` is the dataclass defaults (ch. 4); the others are ours.

cpu   — the embedded default's recipe for this 2-core shared CPU box (~35 min on CIFAR-10).
        Measured (torch 2.13 CPU, width 64, batch 64, 1 thread, per image): backbone warm-up
        step 2.3 ms (1.9 min/epoch), agent step 1.0 ms (0.9 min), joint step 2.0 ms (1.7 min).
        - 1 thread: on a box shared with other jobs, 2 OpenMP threads spin-wait and ran 2-5×
          slower than 1 (2.5 vs 2.3 ms/img even with OMP_WAIT_POLICY=PASSIVE). Use
          --threads 2 only on an idle machine.
        - batch 64, SGD-Nesterov lr 0.05, one-cycle: on a 10k-image, 3-epoch probe it beat
          batch 256 / lr 0.08 (57% vs 42% test) and batch 128 (54%) at the same CPU time; lr 0.2
          diverged to 23%; AdamW 2e-3 matched SGD (57.5%) but looped ~50% more iterations.
        - phantom gradient (2 steps) instead of the implicit adjoint solve to b_tol 1e-5,
          which costs up to b_max_iter extra VJPs per loop; the design §7 prototype trained
          with the phantom gradient.
        - straight_weight 0.05: design §7 — with the straight pass weighted like the loops
          (≥ 0.2) the loops become idempotent and the agent has nothing to choose; at 0 the
          loops gained most (oracle +2.7 pt) at a weaker straight pass.
        - per-epoch evaluation on 2,000 test images; the final one uses all 10,000.
tiny  — seconds-long smoke run on synthetic data (`--dry-run`, tests).
text-cpu  — the IMDB embedded default on this CPU box (LSTM 128, WordPiece 12k, first 512
            tokens, embedding dropout 0.4, 4+1+2 epochs): 88.2% on the 25k test reviews.
            Measured, 1 thread on the box shared with other fits: warm-up epoch 8.3-9 min
            (1.3 s per batch of 64), agent 1.5 min, joint 5.4 min, the final evaluation 7 min:
            55 min wall (47 min training). The earlier 256-token recipe without dropout
            overfitted (train 98.7%) and reached 85.8%. Idle, 2 threads ran ~2.5× faster;
            shared, 2 threads spin-waited to 3-13 s per batch, hence threads 1.
text-cpu-loops — stage 2 of the IMDB default, from a `text-cpu` checkpoint (--init-from; its
            tokenizer is kept): 2 epochs on the looped modes alone (straight weight 0, lr 5e-4),
            then 1 agent epoch with the all-actions gradient at β 0.05. Measured: 88.20% → 88.45%
            (16 min training + 8 min evaluation, 1 thread). The loops stay within 0.1 pt of one
            pass (an LSTM layer re-run on its own output changes little), so the agent keeps to
            `straight`, which is the cheapest and the best action here.
text-cpu-agent — stage 3 of the IMDB default, from a `text-cpu-loops` checkpoint: one agent
            epoch (backbone frozen, all-actions gradient) at β 0.002. At stage 2's β 0.05 the
            agent keeps every review straight; the sweep in reports/runs/imdb-beta (5,000 test
            reviews) has it mixed at β ≤ 0.002 and straight at β ≥ 0.01, with the accuracy flat
            (88.62–88.70%): it sends the reviews it finds hard to the loops, which do not make
            them more accurate. β 0.002 is the default so the served agent adapts (≈ 25% looped,
            1.4× the straight compute); stage 2's checkpoint is the cheaper choice for accuracy.
lm-cpu    — a short WikiText-2 language model on CPU: 1,600 sequences of 64 tokens (~5% of
            train), 1+1+1 epochs. The 33k-word softmax costs ~1.3 s per 2,048 tokens (fwd+bwd,
            1 thread), so one full-train epoch would take ~50 min on this box.
text-tiny — seconds-long text run for the tests (give --dataset and --data-dir).
"""

from __future__ import annotations

from typing import Any

from training.config import TrainConfig, merge

_CPU: dict[str, Any] = {
    "optim": {
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 64,
        "label_smoothing": 0.1,
        "schedule": "onecycle",
        "warmup_frac": 0.1,
        "final_lr_frac": 0.0,
        "agent_lr": 3e-3,
    },
    "phases": {
        "warmup_epochs": 16,
        "agent_epochs": 1,
        "joint_epochs": 2,
        "straight_weight": 0.05,
    },
    "model": {"width": 64, "backward": "phantom", "phantom_steps": 2, "max_iter": 12},
    "threads": 1,
    "eval_every": 1,
    "eval_subset": 2000,
}

# The LSTM both CPU text recipes train: small enough for 2 cores, loops capped at 6 steps.
_TEXT_MODEL: dict[str, Any] = {
    "embed_dim": 128,
    "hidden_size": 128,
    "backward": "phantom",
    "phantom_steps": 2,
    "max_iter": 6,
}


def _loops_stage(base: dict[str, Any], lr: float, loop_epochs: int, agent_epochs: int) -> dict:
    """Stage 2 of an embedded default, run --init-from a `base` checkpoint: the looped modes
    alone (straight weight 0) at a lower lr, then the agent with the all-actions gradient at
    β 0.05; no joint phase (it would train the agent's pick, straight, again)."""
    return {
        **base,
        "optim": {**base["optim"], "lr": lr},
        "phases": {
            "warmup_epochs": loop_epochs,
            "agent_epochs": agent_epochs,
            "joint_epochs": 0,
            "straight_weight": 0.0,
        },
        "agent": {"beta": 0.05, "estimator": "all_actions"},
    }


# The IMDB embedded default's first stage.
_TEXT_CPU: dict[str, Any] = {
    "data": {"dataset": "imdb", "max_length": 512, "tokenizer_vocab": 12000},
    "optim": {
        "optimizer": "adam",
        "lr": 2e-3,
        "batch_size": 64,
        "schedule": "onecycle",
        "warmup_frac": 0.05,
        "final_lr_frac": 0.05,
        "grad_clip": 1.0,
        "agent_lr": 3e-3,
    },
    "phases": {
        "warmup_epochs": 4,
        "agent_epochs": 1,
        "joint_epochs": 2,
        "straight_weight": 0.05,
    },
    "agent": {"beta": 0.1},
    "model": {**_TEXT_MODEL, "embed_dropout": 0.4},
    "threads": 1,
    "eval_batch_size": 250,
    "eval_subset": 2000,
}

_TEXT_CPU_LOOPS = _loops_stage(_TEXT_CPU, lr=5e-4, loop_epochs=2, agent_epochs=1)

# The CIFAR-10 backbone of the fast training recipes: whitened BatchNorm stem, three one-conv
# loopable layers at 256 × 7 × 7, trained as a plain network first (loop weight 0, so a step
# costs one pass) with label smoothing 0.2, Lookahead averaging, alternating flips and 2-pixel
# translations.
_FAST: dict[str, Any] = {
    "data": {"pad": 2, "flip_mode": "alternate"},
    "optim": {
        "optimizer": "sgd",
        "lr": 0.4,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 512,
        "label_smoothing": 0.2,
        "schedule": "onecycle",
        "warmup_frac": 0.25,
        "final_lr_frac": 0.05,
        "lookahead": {"every": 5, "start_frac": 0.3, "decay": 0.95},
        "agent_lr": 3e-3,
    },
    "phases": {
        "warmup_epochs": 10,
        "agent_epochs": 0,
        "joint_epochs": 0,
        "straight_weight": 1.0,
        "loop_weight": 0.0,
    },
    "model": {
        "stem": "whiten",
        "width": 256,
        "stem_width": 64,
        "loop_convs": 1,
        "backward": "phantom",
        "phantom_steps": 2,
        "max_iter": 8,
    },
    "threads": 2,
    "channels_last": True,
    "eval_subset": 2000,
}


# The fast recipes' full stem ("whiten-deep": three BatchNorm conv groups down to 3 × 3 px,
# the loops in place of their last conv) with their optimiser settings restated for a
# mean loss: Nesterov SGD at lr 1.5 with momentum 0.85 on batches of 1024, weight decay
# 0.002 per step (1.33e-3 × lr), the norms' shifts 64 × faster, lr up over 20% then down to 0.
_FAST_DEEP: dict[str, Any] = {
    **_FAST,
    "optim": {
        **_FAST["optim"],
        "lr": 1.5,
        "momentum": 0.85,
        "weight_decay": 1.33e-3,
        "batch_size": 1024,
        "warmup_frac": 0.2,
        "final_lr_frac": 0.0,
        "bias_lr_scale": 64.0,
        "lookahead": {"every": 5, "start_frac": 0.0, "decay": 0.95},
    },
    "model": {**_FAST["model"], "stem": "whiten-deep"},
}


# Stage 2 of the deep recipe, --init-from a `fast-deep` checkpoint: the stem frozen, two
# epochs teach the layers and head to loop (a random looped action per sample, trained
# towards the mirror-averaged straight pass) while the straight pass keeps its own loss.
_FAST_DEEP_LOOPS: dict[str, Any] = {
    **_FAST_DEEP,
    "optim": {**_FAST_DEEP["optim"], "lr": 0.2, "warmup_frac": 0.1},
    "phases": {
        **_FAST_DEEP["phases"],
        "warmup_epochs": 2,
        "loop_weight": 1.0,
        "loop_teacher": "flip",
        "loop_teacher_weight": 0.5,
        "freeze_stem": True,
    },
}


def _fast_loops(**loop_options: Any) -> dict[str, Any]:
    """Stage 2 of the fast recipe, --init-from a `fast` checkpoint: one short epoch (20 batches,
    10,240 images) training the straight pass and a random looped action per sample together
    at a low rate; `loop_options` select the loop design (training.config.PhaseConfig)."""
    return {
        **_FAST,
        "optim": {**_FAST["optim"], "lr": 0.04, "warmup_frac": 0.1, "final_lr_frac": 0.0},
        "phases": {**_FAST["phases"], "warmup_epochs": 1, "loop_weight": 1.0, **loop_options},
        "max_batches": 20,
    }


PRESETS: dict[str, dict[str, Any]] = {
    "thesis": {},
    "cpu": _CPU,
    # Stage 2 of the embedded default, from a `cpu` run (--init-from): the `cpu` run's joint
    # phase follows the agent, which picks `straight` at the thesis' β, so the straight pass
    # ends up the best mode and no β left the agent anything to choose (measured: collapsed to
    # straight at β 0.3, 0.1, 0.05 and 0.02). Three epochs trained on the looped modes alone
    # (straight weight 0) make them stronger than one pass, then the agent learns at β 0.05
    # with the exact all-actions gradient: self-critical REINFORCE (1 epoch) left the agent
    # 0.48 pt below forced loop_l1; two all-actions epochs put it 0.06 pt above, at 4.7 layer
    # evaluations instead of 11.5 (full test set, measured).
    "cpu-loops": _loops_stage(_CPU, lr=0.02, loop_epochs=3, agent_epochs=2),
    "fast": _FAST,
    "fast-deep": _FAST_DEEP,
    "fast-deep-loops": _FAST_DEEP_LOOPS,
    # Stage 3 of the deep recipe: the agent alone on 20 batches, --init-from stage 2.
    "fast-deep-agent": {
        **_FAST_DEEP_LOOPS,
        "phases": {**_FAST_DEEP_LOOPS["phases"], "warmup_epochs": 0, "agent_epochs": 1},
        "agent": {"beta": 0.05, "estimator": "all_actions"},
        "max_batches": 20,
    },
    "fast-loops-mixed": _fast_loops(),
    "fast-loops-focus": _fast_loops(loop_focus=2.0),
    "fast-loops-teacher": _fast_loops(loop_teacher="flip", loop_teacher_weight=0.5),
    # Stage 3: the agent alone (backbone frozen) on 20 batches with the exact all-actions
    # gradient, --init-from a stage-2 checkpoint.
    "fast-agent": {
        **_FAST,
        "phases": {**_FAST["phases"], "warmup_epochs": 0, "agent_epochs": 1},
        "agent": {"beta": 0.05, "estimator": "all_actions"},
        "max_batches": 20,
    },
    "tiny": {
        "data": {"dataset": "synthetic", "synthetic_size": 256, "pad": 2},
        "optim": {"optimizer": "adam", "lr": 3e-3, "batch_size": 32, "agent_lr": 1e-2},
        "phases": {"warmup_epochs": 1, "agent_epochs": 1, "joint_epochs": 1},
        "model": {"width": 8, "max_iter": 6, "backward": "phantom", "agent_hidden": 8},
        "eval_batch_size": 128,
        "name": "dry-run",
    },
    "text-cpu": _TEXT_CPU,
    # Stage 2 of the IMDB default (see text-cpu-loops above), from a text-cpu checkpoint.
    "text-cpu-loops": _TEXT_CPU_LOOPS,
    # Stage 3 of the IMDB default (see text-cpu-agent above), from a text-cpu-loops checkpoint.
    "text-cpu-agent": {
        **_TEXT_CPU_LOOPS,
        "phases": {**_TEXT_CPU_LOOPS["phases"], "warmup_epochs": 0, "agent_epochs": 1},
        "agent": {"beta": 0.002, "estimator": "all_actions"},
    },
    "lm-cpu": {
        "data": {"dataset": "wikitext2", "seq_len": 64, "train_subset": 1600},
        "optim": {
            "optimizer": "adam",
            "lr": 3e-3,
            "batch_size": 32,
            "schedule": "onecycle",
            "warmup_frac": 0.05,
            "final_lr_frac": 0.05,
            "grad_clip": 0.5,
            "agent_lr": 3e-3,
        },
        "phases": {"warmup_epochs": 1, "agent_epochs": 1, "joint_epochs": 1},
        "agent": {"beta": 0.02},
        "model": _TEXT_MODEL,
        "threads": 1,
        "eval_batch_size": 32,
        "eval_subset": 320,
    },
    "text-tiny": {
        "data": {"dataset": "imdb", "max_length": 24, "tokenizer_vocab": 300, "seq_len": 16},
        "optim": {"optimizer": "adam", "lr": 3e-3, "batch_size": 8, "agent_lr": 1e-2},
        "phases": {"warmup_epochs": 1, "agent_epochs": 1, "joint_epochs": 1},
        "model": {
            "embed_dim": 16,
            "hidden_size": 16,
            "max_iter": 4,
            "backward": "phantom",
            "agent_hidden": 8,
        },
        "eval_batch_size": 16,
        "name": "text-tiny",
    },
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return merge(TrainConfig(), PRESETS[name])
