"""Convert an official ACmix (Swin, ResNet), Swin or PVT v1 checkpoint.

Usage: python tools/model_converters/acmix_official.py SRC DST

SRC is read without executing pickled code (the official trainer pickles a
yacs ``CfgNode`` that plain ``weights_only`` loading refuses). DST holds
``{'state_dict', 'meta'}`` in the layout of mmpretrain's ``ImageClassifier``
(``backbone.*``, ``head.fc.*``) and loads with ``torch.load`` defaults, as a
classification checkpoint or as a backbone ``init_cfg=dict(type='Pretrained',
checkpoint=DST, prefix='backbone.')``. Supported layouts are listed in
``mmacmix.models.converters.LAYOUTS``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..'))
# isort: off
from mmacmix.models.converters import (ConversionError,  # noqa: E402
                                       convert_checkpoint)
# isort: on


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    args = parser.parse_args()
    try:
        layout = convert_checkpoint(args.src, args.dst)
    except ConversionError as err:
        sys.exit(f'error: {err}')
    print(f'{args.src} ({layout}) -> {args.dst}')


if __name__ == '__main__':
    main()
