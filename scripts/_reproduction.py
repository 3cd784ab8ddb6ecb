"""What the reproduction scripts share: their command line and the machine they ran on."""

from __future__ import annotations

import argparse
import platform
from dataclasses import dataclass

import torch

from lrpo_study.training.loop import resolve_device


@dataclass(frozen=True)
class Reproduction:
    data_dir: str | None
    device: torch.device
    seeds: list[int]
    out: str
    machine: str


def parse(doc: str | None) -> Reproduction:
    """``--data-dir``, ``--device``, ``--seeds`` and ``--out``, parsed and resolved."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    device = resolve_device(args.device)
    machine = (torch.cuda.get_device_name() if device.type == "cuda"
               else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    return Reproduction(args.data_dir, device, [int(s) for s in args.seeds.split(",")], args.out, machine)
