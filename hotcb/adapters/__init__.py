"""Adapters give the kernel what every env needs (``metric``, ``kernel``, ``max_steps``) in the
training stacks people use: Lightning (:mod:`.lightning`), HuggingFace (:mod:`.hf`) and bare
PyTorch loops (:mod:`.torch`)."""
