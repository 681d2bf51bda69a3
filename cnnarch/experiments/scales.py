"""The scales `cnnarch reproduce` runs at: what each trains, for how long, with which recipe.

- ``quick``: digits, the `make demo` budget (minutes on 2 CPU cores);
- ``standard``: digits, what quick leaves out (trained GoogLeNet, the trained ablations
  of G2, G4 and B1), about 15 minutes on 2 CPU cores (at most 20);
- ``full``: the papers' CIFAR recipes and depths (hours on one GPU).

docs/reproduce.md lists which claims and parts each scale covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class Scale:
    """What one scale trains and measures (the module docstring says what each scale is for)."""

    name: str
    depths: tuple[int, ...]  # CIFAR-family depths of the degradation twins
    epochs: int  # degradation / residual training
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str  # cosine | step
    milestones: tuple[int, ...] = ()  # for schedule "step", in milestone_unit
    milestone_unit: str = "epoch"  # epoch | iteration
    iterations: int = 0  # > 0: twins train for this many optimizer steps instead of epochs
    warmup_epochs: float = 1.0
    aux_epochs: int = 8  # GoogLeNet with / without aux heads (8: >= 97.8 % on digits, docs/reproduce.md)
    aux_iterations: int = 0  # > 0: that many optimizer steps instead of aux_epochs
    aux_batch_size: int = 64
    aux_lr: float = 0.05  # googlenet_small's peak lr (SGD, momentum 0.9, cosine)
    aux_warmup_epochs: float = 0.5
    aux_channels_last: str = "on"  # googlenet_small in channels_last, fp32 too (faster: docs/benchmarks.md)
    aux_no_bn: bool = False  # also train the 2014 setting (no BN, Caffe's Xavier init) for G5
    aux_no_bn_epochs: int = 12  # its run length (slower than the BN net; at 10 a seed ends below 50 %)
    aux_no_bn_lr: float = 0.03  # its peak lr (0.05 and up: the first epochs stay at chance longer)
    lesion_max_removed: int = 4  # B2: up to this many blocks deleted at once
    lesion_subsets: int = 2  # B2: random sets of blocks per count
    preact_trained: bool = False  # B1: train preact-20 shortcut variants and preact-56
    probe_images: int = 256  # images for the gradient / response / ratio probes
    jacobian_blocks: int = 6  # identity blocks per model whose Jacobian is measured
    timing_repeats: int = 5
    precision: str = "fp32"
    channels_last: str = ""  # on | off | auto; "" = off at fp32, else auto
    seeds: int = 1  # default number of seeds of every trained measurement (--seeds)
    run_folders: bool = False  # write each trained model's run folder under the report's folder
    inception_ablation_epochs: int = 0  # G4 trained: bottleneck / linear / naive modules (0 = not run)
    inception_ablation_batch_size: int = 0  # G4 trained: batch size (0 = aux_batch_size)
    inception_variants: tuple[str, ...] = ("bottleneck", "linear", "naive")  # G4 trained: the variants
    inception_naive_lr: float = 0.0  # G4 trained: the naive variant's peak lr (0 = aux_lr, the others')
    inception_linear_longer: bool = False  # G4: also bottleneck vs linear at G5's run length


SCALES = {
    # quick: the paper's lr 0.1 at batch 128, scaled linearly to batch 64 (more steps in the
    # budget); 15 epochs = 330 steps, enough for ResNet-56 to converge on digits (10 were not:
    # it ended at 11 % training error). googlenet_small costs ~12x a ResNet-56 per image and
    # needs 8 epochs (~1.4 min per run on one core) to reach 97 % in every seed: quick measures
    # G5 at init only (aux_epochs 0), the trained parts run at the larger scales.
    "quick": Scale("quick", depths=(20, 56), epochs=15, batch_size=64, lr=0.05, weight_decay=1e-4,
                   schedule="cosine", warmup_epochs=1.0, aux_epochs=0, aux_iterations=0, aux_batch_size=64,
                   probe_images=256, jacobian_blocks=4, timing_repeats=3, seeds=3),
    # standard: the quick twins (shared recipe, same seeds) plus what quick leaves out:
    # googlenet_small trained with and without aux heads (G5) and its branch ablation (G2),
    # bottleneck vs linear modules at equal steps (G4: 1 epoch at batch 32 = 44 steps each)
    # and once more at G5's run length (the cheap pair; G5's run is the bottleneck arm), the
    # pre-activation nets trained (B1), 10 random lesion sets per k (B2), and the 2014 setting
    # (no BN, 12 epochs at lr 0.03; its 6 runs are over a third of the scale's CPU time, about as
    # much per step as BN). The naive variant is left to full: a naive step costs ~10x a
    # bottleneck one, and 45 of them (4 of the 20 minutes) brought neither the bottleneck nor the
    # naive net to G4's 50 % learned bar, so trained-cost-accuracy could only say "inconclusive".
    "standard": Scale("standard", depths=(20, 56), epochs=15, batch_size=64, lr=0.05, weight_decay=1e-4,
                      schedule="cosine", warmup_epochs=1.0, aux_epochs=8, aux_iterations=0,
                      aux_batch_size=64, aux_no_bn=True, lesion_subsets=10, preact_trained=True,
                      probe_images=256, jacobian_blocks=4, timing_repeats=3, seeds=3,
                      inception_ablation_epochs=1, inception_ablation_batch_size=32,
                      inception_variants=("bottleneck", "linear"), inception_linear_longer=True),
    # The paper's CIFAR recipe (Sec. 4.2): SGD 0.1, momentum 0.9, wd 1e-4, batch 128, lr / 10 at
    # 32k and 48k iterations, stop at 64k (~164 epochs on 50k images). G4's three modules
    # train 10 epochs each at batch 128 (~3.9k steps; the naive one alone costs about as much
    # as 100 epochs of the bottleneck one): an equal-steps comparison, not the paper's recipe.
    # The naive net at a tenth of the others' lr: at 0.1 it diverged in its first epoch on
    # digits (training loss ~258), at a tenth of G5's lr it reached 98.6-98.9 % (docs/reproduce.md).
    "full": Scale("full", depths=(20, 32, 44, 56, 110), epochs=164, batch_size=128, lr=0.1,
                  weight_decay=1e-4, schedule="step", milestones=(32000, 48000),
                  milestone_unit="iteration", iterations=64000, warmup_epochs=0.0,
                  aux_epochs=164, aux_iterations=64000, aux_batch_size=128, aux_lr=0.1, aux_warmup_epochs=0.0,
                  aux_no_bn=True, lesion_max_removed=20, lesion_subsets=20,
                  preact_trained=True, probe_images=1000, jacobian_blocks=12,
                  timing_repeats=10, precision="auto", seeds=1, run_folders=True,
                  inception_ablation_epochs=10, inception_ablation_batch_size=128,
                  inception_naive_lr=0.01),
}


def get_scale(name: str | Scale) -> Scale:
    if isinstance(name, Scale):
        return name
    if name not in SCALES:
        raise UserError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}")
    return SCALES[name]
