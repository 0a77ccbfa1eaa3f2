"""Repair: a genome made to fit the run before it trains, as search policy rather than model
building. :func:`fit_to_image` keeps downsampling from shrinking maps below a few pixels;
:func:`fit_to_budget` narrows (then shortens) a genome over the run's MACs or parameter budget,
deterministically, or says it cannot fit (``None``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from automodel.evolution.genome import Genome
from automodel.training.model import CandidateNet, count_parameters, meta_model, model_macs, plan_conv_blocks

MIN_DOWNSAMPLED_SIDE = 4  # new genomes do not downsample maps below this side (see fit_to_image)


def fit_to_image(genome: Genome, input_shape: Sequence[int]) -> Genome:
    """The genome with its downsampling turned off where a block's input is already at most
    ``MIN_DOWNSAMPLED_SIDE`` pixels on its smaller side: maps of 1 or 2 pixels leave later blocks
    little to work with, and networks that shrank to them rarely learned within a few epochs
    (bench/bench_priors.py). Networks from earlier versions are never changed by this (it applies
    to new genomes only, in the search)."""
    conv = list(genome.conv)
    for i, plan in enumerate(plan_conv_blocks(genome, input_shape)):
        if conv[i].downsample != "none" and min(plan.in_hw) <= MIN_DOWNSAMPLED_SIDE:
            conv[i] = replace(conv[i], downsample="none")
    return genome if conv == list(genome.conv) else replace(genome, conv=tuple(conv))


def fit_to_budget(
    genome: Genome,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    max_macs: int,
    max_params: int,
    min_filters: int = 8,
    min_blocks: int = 1,
    max_steps: int = 64,
) -> Genome | None:
    """The genome itself when it is within both budgets, else a repaired copy, or None.

    Repairs, one at a time and re-measured after each, aimed at the costliest block:
    downsampling is added before it (the block that feeds it gets 2×2 max pooling, so the costly
    block runs on a quarter of the pixels: this keeps the full-resolution layers cheap), then its
    filters are halved, then its kernel shrinks to 3, then the block is dropped. The head is
    switched from flatten to global pooling when it is the part over the parameter cap. Deterministic, so the same
    genome is always repaired the same way.
    """
    for _ in range(max_steps):
        model = meta_model(genome, input_shape, num_classes)
        params, macs = count_parameters(model), model_macs(model)
        if params <= max_params and sum(macs) <= max_macs:
            return genome
        repaired = _repair_once(
            genome, model, macs, over_macs=sum(macs) > max_macs, min_filters=min_filters, min_blocks=min_blocks
        )
        if repaired is None or repaired == genome:
            return None
        genome = repaired
    return None


def _repair_once(
    genome: Genome, model: CandidateNet, macs: list[int], *, over_macs: bool, min_filters: int, min_blocks: int
) -> Genome | None:
    conv = list(genome.conv)
    if not conv:
        return None
    if not over_macs:  # over the parameter cap: the head's first dense layer is the usual culprit
        head_params = sum(count_parameters(m) for m in model.classifier)
        if genome.head == "flatten" and head_params * 2 > count_parameters(model):
            return replace(genome, head="avgmax")
        costliest = max(range(len(conv)), key=lambda i: (count_parameters(model.features[i]), i))
    else:
        costliest = max(range(len(conv)), key=lambda i: (macs[i], i))
    block, plan = conv[costliest], model.plans[costliest]
    # 1. Run the costly block on fewer pixels: the nearest earlier block that keeps its size pools.
    if over_macs and plan.in_hw != (1, 1):
        for i in range(costliest - 1, -1, -1):
            if conv[i].downsample == "none" and model.plans[i].out_hw != (1, 1):
                conv[i] = replace(conv[i], downsample="max")
                return replace(genome, conv=tuple(conv))
    # 2. Fewer filters.
    if block.filters > min_filters:
        conv[costliest] = replace(block, filters=max(min_filters, block.filters // 2))
        return replace(genome, conv=tuple(conv))
    # 3. A smaller kernel.
    if block.kernel > 3:
        conv[costliest] = replace(block, kernel=3)
        return replace(genome, conv=tuple(conv))
    # 4. The costly block itself downsamples, if it did not.
    if over_macs and block.downsample == "none" and plan.in_hw != (1, 1):
        conv[costliest] = replace(block, downsample="stride")
        return replace(genome, conv=tuple(conv))
    # 5. One block fewer.
    if len(conv) > min_blocks:
        del conv[costliest]
        return replace(genome, conv=tuple(conv))
    if genome.dense:
        return replace(genome, dense=genome.dense[:-1])
    return None


# ---------------------------------------------------------------------------------- for people
