"""What runs models for the tools: safe and fit-checked checkpoint loading
(:mod:`.checkpoint`), the runner helpers ``tools/train.py`` and
``tools/test.py`` share (:mod:`.runner`, :mod:`.tool_options`), and every
patch of an upstream library (:mod:`.patches`)."""
