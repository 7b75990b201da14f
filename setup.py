from setuptools import find_packages, setup

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
    packages=find_packages(include=['mmacmix', 'mmacmix.*']),
    python_requires='>=3.9',
    # mmacmix.layers needs torch alone; the OpenMMLab stack is optional so the
    # layers can be used without it (see requirements/runtime.txt).
    install_requires=['torch'],
    extras_require={
        'openmmlab': [
            line.strip() for line in open('requirements/runtime.txt')
            if line.strip() and not line.startswith('#')
        ],
    },
)
