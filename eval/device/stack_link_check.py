"""Does torch.profiler link a CUDA operator to the Python frames that launched it (``with_stack``)? Prints the parent
chain of one matmul: ``bench --profile-stacks`` groups the device's time by those frames."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile


def launch(x: torch.Tensor) -> torch.Tensor:
    return x @ x


x = torch.randn(256, 256, device="cuda")
launch(x)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
    launch(x)
    torch.cuda.synchronize()
events = prof.events()
print("python frames recorded:", sum(".py(" in e.name for e in events))
for event in events:
    if event.name == "aten::mm":
        chain, parent = [], event
        while parent is not None:
            chain.append(f"{parent.name} [thread {parent.thread}]")
            parent = parent.cpu_parent
        print("aten::mm device us", event.self_device_time_total, "chain:", " < ".join(chain))
        break
