"""The small datasets the tests and the main job use, in the real COCO,
ADE20K and ImageNet formats (docs/toy_data.md)."""
