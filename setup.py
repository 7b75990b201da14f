import os
import os.path as osp
import shutil
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# What `mim` looks for under an installed package's `.mim/` folder: the
# configs `mim train/test` resolve by name, the tools they run and the model
# index `mim search` reads (with the metafiles it points to).
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(path):
    """The requirement lines of ``path`` (comments and blanks dropped)."""
    with open(path) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
        ]


class BuildPyWithMim(build_py):
    """``build_py`` that also puts :data:`MIM_FILES` under ``mmacmix/.mim/``,
    where ``mim`` and the package look for them (as mmdet and mmpretrain
    ship theirs): copies in the build of a wheel, links to the checkout's
    files in an editable install."""

    def run(self):
        super().run()
        for name in MIM_FILES:
            if not osp.exists(name):
                raise FileNotFoundError(
                    f'{name} is missing: build from a checkout or an sdist')
        if self.editable_mode:
            self.link_into_checkout()
            return
        mim_dir = osp.join(self.build_lib, 'mmacmix', '.mim')
        for name in MIM_FILES:
            target = osp.join(mim_dir, name)
            if osp.isdir(name):
                shutil.copytree(
                    name, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                self.mkpath(mim_dir)
                shutil.copyfile(name, target)

    @staticmethod
    def link_into_checkout():
        mim_dir = osp.join('mmacmix', '.mim')
        os.makedirs(mim_dir, exist_ok=True)
        for name in MIM_FILES:
            link = osp.join(mim_dir, name)
            if osp.islink(link) or osp.isfile(link):
                os.remove(link)
            elif osp.isdir(link):
                shutil.rmtree(link)
            os.symlink(osp.join('..', '..', name), link)


class BuildPyWithMmcvLiteHook(BuildPyWithMim):
    """Also writes ``mmacmix_mmcv_lite.pth`` to the root of site-packages
    (the build's root for a wheel, the editable wheel's for ``pip install
    -e``): at interpreter start it installs the ``mmcv._ext`` finder of
    ``mmacmix_mmcv_lite.py``, which acts only where mmcv has no compiled
    ops (mmcv-lite)."""

    PTH = 'mmacmix_mmcv_lite.pth'

    def run(self):
        super().run()
        if self.editable_mode:
            root = self.get_finalized_command('install').install_lib
        else:
            root = self.build_lib
        self.mkpath(root)
        with open(osp.join(root, self.PTH), 'w') as f:
            f.write('import mmacmix_mmcv_lite; mmacmix_mmcv_lite.install()\n')


version = {}
with open('mmacmix/version.py') as f:
    exec(f.read(), version)

setup(
    name='mmacmix',
    version=version['__version__'],
    description='ACmix backbones (Pan et al., CVPR 2022) for OpenMMLab '
    'detection, segmentation and classification',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    license_files=['LICENSE'],
    keywords='computer vision, ACmix, object detection, segmentation',
    classifiers=[
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    packages=find_packages(include=['mmacmix', 'mmacmix.*']),
    py_modules=['mmacmix_mmcv_lite'],
    python_requires='>=3.9',
    # mmacmix.layers needs torch alone; the OpenMMLab stack is optional so the
    # layers can be used without it (see requirements/runtime.txt). The
    # oldest torch is mmacmix/version.py's TORCH_MIN; no upper bound.
    install_requires=['torch>=' + '.'.join(map(str, version['TORCH_MIN']))],
    extras_require={
        # mmcv-lite: mmacmix provides its compiled ops (mmacmix/ops)
        'openmmlab':
        read_requirements('requirements/runtime.txt') + ['mmcv-lite==2.1.0'],
        'tensorboard': read_requirements('requirements/optional.txt'),
        'tests': read_requirements('requirements/tests.txt'),
    },
    cmdclass={'build_py': BuildPyWithMmcvLiteHook},
    zip_safe=False,
)
