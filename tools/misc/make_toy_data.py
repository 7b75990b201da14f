"""Write the deterministic toy COCO / ADE20K / ImageNet datasets.

    python tools/misc/make_toy_data.py [--out data/toy] [--seed 0]
"""
import argparse
import time

from mmacmix.datasets.toy_data import make_all


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/toy', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    root = make_all(args.out, seed=args.seed)
    print(f'toy datasets written to {root}/{{coco,ade,imagenet}} in '
          f'{time.perf_counter() - start:.1f}s')


if __name__ == '__main__':
    main()
