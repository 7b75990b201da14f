"""Convert an official ACmix (Swin, ResNet), Swin (official, mmpretrain, timm),
PVT v1 or SAN (patchwise) checkpoint.

Usage: python tools/model_converters/acmix_official.py SRC DST [--force]

SRC is read without executing pickled code (the official trainer pickles a
yacs ``CfgNode`` that plain ``weights_only`` loading refuses). DST holds
``{'state_dict', 'meta'}`` in the layout of mmpretrain's ``ImageClassifier``
(``backbone.*``, ``head.fc.*``) and loads with ``torch.load`` defaults, as a
classification checkpoint or as a backbone ``init_cfg=dict(type='Pretrained',
checkpoint=DST, prefix='backbone.')``. Supported layouts are listed in
``mmacmix.models.converters.LAYOUTS``. The tool prints the layout found,
then how many source tensors were loaded and what of the model keeps its
initialisation (e.g. the convolution paths a plain Swin lacks).

DST's folder is created if needed and DST is written atomically (a
temporary file renamed into place). An existing DST is replaced only with
``--force``, and never when it is SRC itself.
"""
import argparse
import sys

from mmacmix.models.converters import ConversionError, convert_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    parser.add_argument('--force', action='store_true',
                        help='replace DST if it exists (never SRC)')
    args = parser.parse_args(argv)
    try:
        reports = []
        layout = convert_checkpoint(
            args.src, args.dst, overwrite=args.force, report=reports.append)
    except ConversionError as err:
        sys.exit(f'error: {err}')
    except OSError as err:
        sys.exit(f'error: cannot write {args.dst}: {err}')
    print(f'{args.src} ({layout}) -> {args.dst}')
    print(*reports, sep='\n')


if __name__ == '__main__':
    main()
