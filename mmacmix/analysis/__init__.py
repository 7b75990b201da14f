"""Counting and comparing: params and FLOPs (:mod:`.complexity`), speed and
memory (:mod:`.benchmark`), training logs (:mod:`.logs`), the model-zoo
table against the paper (:mod:`.model_zoo`) and the configs' training
recipes (:mod:`.recipe`)."""
