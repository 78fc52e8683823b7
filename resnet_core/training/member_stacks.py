"""The models of several trainers in one worker process, trained as members of shared stacks: the
distinct runs of a class (different seeds, learning rates, optimizer settings) whose nets have one
shape take their forward and backward passes together, one kernel call per layer for all of them.

A stack (``nets.mlp_stacked.StackedMLP``) holds the models of one shape: the same layers, block
kinds and batch size, so identical nets up to their numbers and their shortcuts. A plain net and its
residual twin with identity shortcuts are one shape (the walk adds a block's shortcut for the members
that have one), so a session's twins of one depth share a stack with each other and with the other
sessions' twins of that depth; a projection shortcut is weights, a shape of its own. While in a
stack, a member's parameters and BN statistics are views into the stacked tensors; a change of
membership (a run joins, leaves, pauses, finishes, diverges) builds the stack anew from the
members' current tensors, at a step boundary.

``prepare(trainers)`` does the next step's passes of every model that shares its shape with at
least two others' (``SMALLEST_STACK``: a stack of two does not pay): each trainer's own next batch
(its own ``BatchStream``), one stacked forward and backward, each member's gradients handed to its own parameters, its loss and its layer probe kept in
the trainer's ``prepared``. The trainer's own ``train_step`` then does the rest as it always does:
its divergence rule, its layer snapshot, its OWN optimizer step (so its learning rate, momentum and
optimizer kind stay its own), its evaluation and its analyses. Each member's numbers are those of
training it alone, bit for bit (tests/test_member_stacks.py); anything a stack does not know (a CNN,
a block variant the written-out pass does not hold, a GPU, the engine switched off) trains alone.
"""
from __future__ import annotations

import time

import torch

from resnet_core.nets import mlp_stack
from resnet_core.nets.mlp_stacked import StackedMLP, stackable
from resnet_core.nets.models import Net, Probe
from resnet_core.training.lockstep import LockstepTrainer, Prepared


def stack_key(trainer: LockstepTrainer, net: Net, twins: bool = True) -> tuple | None:
    """What a net must share with another to train in one stack with it, or None where it cannot be
    stacked now (not an MLP a stack holds, not on the CPU, a block removed for a lesion). ``twins``
    False: a plain net and its residual twin apart (as before they could share; the bench compares)."""
    key = getattr(net, "_member_key", False)
    if key is False:
        plain = mlp_stack.ENABLED and trainer.device.type == "cpu" and stackable(net)
        # The modules' own descriptions name every layer's shape, BN's eps and momentum, and a
        # projection shortcut; the activation order is the rest of what the stacked walk reads.
        # Whether a block adds its identity shortcut is not: the walk decides it per member.
        key = net._member_key = (str(net), net.pre, tuple(b.pre for b in net.blocks),
                                 str(net.head.weight_layer.weight.dtype)) if plain else None
    if key is None or not net.training or any(b.removed for b in net.blocks):
        return None
    return key + (trainer.batches.batch_size,) + (() if twins else (net.residual,))


# The fewest members a stack is built for. Measured (BENCHMARKS.md, "Twins in one stack": bare steps
# of the degradation lesson's nets in one process): a stack of two costs what the two members' own
# passes cost or more (a ``bmm`` of two products this small costs two ``mm``s, and each BN adds two
# copies: one run's twins stacked alone, 0.77-0.84x), from three on it pays (two runs' twins, a
# stack of four: 1.18x; ten runs, stacks of ten and twenty: 2.1-2.2x). So a session's twins share a
# stack once another session's models of their depth are there, and train their own passes alone.
SMALLEST_STACK = 3


class MemberStacks:
    """One worker process's stacks, rebuilt as their members change."""

    def __init__(self, twins: bool = True, smallest: int = SMALLEST_STACK) -> None:
        self.twins = twins  # a plain net and its residual twin in one stack (``stack_key``)
        self.smallest = smallest  # a group of fewer models trains its own passes
        self._stacks: dict[tuple, StackedMLP] = {}
        self.sizes: list[int] = []  # the stacks of the last prepare: how many members each

    def prepare(self, trainers: list[LockstepTrainer]) -> list[int]:
        """The next step's passes of every model of ``trainers`` (each at a step's end) that shares
        its shape with enough others' (``smallest``); the others train alone. The sizes of the stacks used."""
        started = time.perf_counter()
        groups: dict[tuple, list[tuple[LockstepTrainer, str, Net]]] = {}
        for t in trainers:
            if t.done or t.prepared is not None:
                continue
            for name, net in t.training_models():
                key = stack_key(t, net, self.twins)
                if key is not None:
                    groups.setdefault(key, []).append((t, name, net))
        # A stack's members that add their blocks' shortcuts come last (``StackedMLP``): plain nets first.
        groups = {k: sorted(members, key=lambda m: m[2].residual) for k, members in groups.items()
                  if len(members) >= max(self.smallest, 2)}
        self._stacks = {k: s for k, s in self._stacks.items() if k in groups}  # a stack not used lets go
        batches: dict[int, torch.Tensor] = {}
        passes: dict[int, dict[str, tuple[torch.Tensor, Probe | None]]] = {}
        for key, members in groups.items():
            for t, _, _ in members:
                if id(t) not in batches:
                    batches[id(t)] = t.batches.next().to(t.device)  # the trainer's own next batch
            self._pass(self._stack(key, [net for _, _, net in members]), members, batches, passes)
        self.sizes = [len(members) for members in groups.values()]
        share = (time.perf_counter() - started) / max(len(passes), 1)
        for t in trainers:
            if id(t) in passes:
                t.prepared = Prepared(batches[id(t)], passes[id(t)], share)
        return self.sizes

    def clear(self) -> None:
        """Let every stack go (a trainer that leaves the process lets its models go with them)."""
        self._stacks = {}

    def _stack(self, key: tuple, nets: list[Net]) -> StackedMLP:
        """The stack of these members, in this order: the one in use, or one built anew."""
        stack = self._stacks.get(key)
        if stack is None or len(stack.nets) != len(nets) or any(a is not b for a, b in zip(stack.nets, nets)):
            stack = self._stacks[key] = StackedMLP(nets)
        return stack

    @staticmethod
    def _pass(stack: StackedMLP, members: list[tuple[LockstepTrainer, str, Net]], batches: dict[int, torch.Tensor],
              passes: dict[int, dict[str, tuple[torch.Tensor, Probe | None]]]) -> None:
        x = torch.stack([t.x_train[batches[id(t)]] for t, _, _ in members])
        y = torch.stack([t.y_train[batches[id(t)]] for t, _, _ in members])
        probing = [t.step % t.settings.probe_every == 0 for t, _, _ in members]
        probe = Probe() if any(probing) else None
        for p in stack.parameters:
            p.grad = None
        losses = stack.losses(x, y, probe)
        losses.sum().backward()  # each member's gradient is its own loss's: the sum passes 1.0 to each
        stack.hand_gradients()
        losses = losses.detach().unbind(0)
        probes = stack.member_probes(probe) if probe is not None else [None] * len(members)
        for i, (t, name, _) in enumerate(members):
            passes.setdefault(id(t), {})[name] = (losses[i], probes[i] if probing[i] else None)
