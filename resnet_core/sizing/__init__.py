"""What a run needs, from its settings alone, without torch: every weighted layer of a net as
``build_model`` would make it (``layout``: the exact parameter count, each layer's output size),
and the memory a training process will hold at its peak against the budget one run may take
(``budget``). The dashboard's server refuses a run with these before any worker builds it; the
trainer, the sweep, the landscape and the shattered-gradient jobs check the same numbers.
"""
