"""Every shell command in README.md and docs/*.md runs in a test, so the docs
cannot drift; the README stays short and the links between pages resolve.

The commands are the lines of the ```bash, ```shell and ```sh blocks
(backslash continuations joined, comments and ``$`` prompts dropped,
whitespace collapsed). Each must match an entry of one of two tables:

- ``RUN_HERE``: commands that ``test_documented_command_runs`` runs as
  written, through bash, from a workspace holding ``tools/``, ``configs/``,
  toy data and stand-ins for the main job's checkpoint and log: light ones
  literally (``--help``, ``--no-measure``, the toy data, the plots), heavy
  ones made small by arguments appended at the end (fewer runs, a smaller
  input), which argparse lets override the documented ones;
- ``COVERED_BY``: heavy commands (8 GPUs, full datasets), each mapped to the
  tests that run it or its toy stand-in (``tests/<file>.py::<test>``; those
  tests must exist), or to the repository script that runs it
  (``.ci/run``).

A pattern is the exact command (a ``str``) or a ``re.compile(...)`` that
must match the whole command. Usage synopses with placeholders (CONFIG,
CHECKPOINT) and commands no test can run (GPU installs, Slurm) belong in
```text blocks, with a sentence saying why.
"""
import importlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple, Union

import pytest
from test_paper_tools import TOY_DET, save_fresh_checkpoint, write_lines

from mmacmix.datasets import toy_data

from helpers import REPO_ROOT, tool_env

Pattern = Union[str, re.Pattern]
SHELL_LANGUAGES = {'bash', 'shell', 'sh'}
README_MAX_LINES = 250


@dataclass(frozen=True)
class Runs:
    """A documented command run here; ``expect`` must be in its output.
    ``append`` makes a heavy one small: arguments added at the end, where
    argparse lets them override the documented ones. ``slow``: over ~10 s
    (marked slow)."""
    pattern: Pattern
    expect: str
    append: str = ''
    slow: bool = False


@dataclass(frozen=True)
class CoveredBy:
    """A heavy documented command and the tests (or script) that run it or
    its toy stand-in; ``why`` says how they stand in for it."""
    pattern: Pattern
    tests: Tuple[str, ...]
    why: str


@dataclass(frozen=True)
class PageRunBy:
    """A page whose ``tests`` read its shell commands off the page and run
    every one of them (as written, on toy data, or with --dry-run)."""
    page: str
    tests: Tuple[str, ...]


SMALL_BENCHMARK = '--runs 1 --warmup 0 --batch 1'
RUN_HERE = [
    Runs(re.compile(r'python tools/[\w/]+\.py --help'), 'usage:'),
    Runs('python tools/misc/make_toy_data.py --out data/toy',
         'toy datasets written to data/toy'),
    Runs('python tools/analysis_tools/paper_table.py --no-measure',
         'not measured', slow=True),
    # on the workspace's stand-ins for the main job's checkpoint and log
    Runs(re.compile(r'python tools/analysis_tools/plot_rates\.py '
                    r'work_dirs/main_job/epoch_8\.pth .*'), 'rate1/rate2'),
    Runs('python tools/analysis_tools/plot_logs.py work_dirs/main_job',
         'coco/bbox_mAP'),
    Runs(re.compile(r'python tools/demo/image_demo\.py \S+\.jpg '
                    r'configs/toy/\S+\.py work_dirs/main_job/epoch_8\.pth '
                    r'.*'), 'detections score >=', slow=True),
    # made small
    Runs(re.compile(r'python \.dev_scripts/benchmark_unfold\.py .*'),
         'faster', f'{SMALL_BENCHMARK} --size 112 --skip-memory', slow=True),
    # --compile needs warm-up steps: docs/performance_checks.md's own tests
    Runs(re.compile(
        r'python tools/analysis_tools/benchmark\.py (?!.*--compile).*'),
         'ratio',
         # 112 px: the smallest ResNet- and SAN-ACmix-50 input is 97
         f'{SMALL_BENCHMARK} --shape 112 112 --no-memory', slow=True),
    Runs(re.compile(r'python tools/analysis_tools/get_flops\.py .*'),
         'FLOPs (G)', '--shape 112 112', slow=True),
]

E2E = 'tests/test_e2e.py::'
PAPER_TOOLS = 'tests/test_paper_tools.py::'
DIST_TOY = E2E + 'test_dist_train_two_cpu_processes'
COVERED_BY = [
    # minutes of inductor compiling
    CoveredBy(
        'python tools/analysis_tools/benchmark.py '
        'configs/retinanet_pvt_acmix_s_1x_coco.py:backbone --mode train '
        '--batch 8 --runs 5 --warmup 1 --threads 2 --compile --no-memory',
        ('tests/test_performance_checks.py::'
         'test_benchmark_commands_on_a_toy_backbone', ),
        'a --compile run (aot_eager) on a toy backbone'),
    # the two commands and the environment
    CoveredBy('bash tools/run_tests.sh', ('.ci/run', ),
              'CI runs it on every change'),
    CoveredBy('bash tools/setup_env.sh', ('tools/run_tests.sh', ),
              'run_tests.sh (so CI) runs it first'),
    CoveredBy('bash tools/main_job.sh', (
        'tests/test_toy_data.py::test_generator_is_deterministic',
        E2E + 'test_det_train_checkpoint_test',
        PAPER_TOOLS + 'test_plot_rates_prints_the_checkpoint_rates',
        PAPER_TOOLS + 'test_image_demo_draws_detections',
    ), 'its steps (toy data, train and test the toy Mask R-CNN, plot the '
       'rates, draw the demo), each on less data'),
    # the RetinaNet PVT-ACmix-S walk-through
    CoveredBy('tools/dist_train.sh configs/pvt_acmix_s_in1k.py 8', (
        'tests/test_pvt_acmix.py::test_config_builds',
        E2E + 'test_cls_train_and_test_accuracy', DIST_TOY,
    ), 'the config builds; the toy classifier trains, and dist_train.sh '
       'with 2 CPU processes'),
    CoveredBy(
        'python tools/model_converters/acmix_official.py pvt_small.pth '
        'checkpoints/pvt_acmix_s_in1k.pth', (
            'tests/test_pvt_acmix.py::test_converter_recognises_pvt_v1',
            'tests/test_pvt_acmix.py::'
            'test_converted_whai362_checkpoint_loads_as_classifier',
            'tests/test_converter.py::test_command_line_tool',
        ), 'a small PVT v1 state dict in whai362\'s layout converts; the '
           'command line on the official Swin-ACmix layout'),
    CoveredBy(
        re.compile(r'tools/dist_(train|test)\.sh '
                   r'configs/retinanet_pvt_acmix_s_1x_coco\.py( \S+\.pth)? 8'),
        ('tests/test_pvt_acmix.py::test_config_builds',
         'tests/test_pvt_acmix.py::test_toy_retinanet_trains_and_evaluates',
         DIST_TOY),
        'the config builds; the toy RetinaNet PVT-ACmix trains and tests; '
        'dist_train.sh and dist_test.sh with 2 CPU processes'),
    # get_started.md
    CoveredBy(
        re.compile(r'python tools/(train|test)\.py '
                   r'configs/toy/mask_rcnn_swin_acmix_toy_coco\.py'
                   r'( \S+\.pth)?'),
        (E2E + 'test_det_train_checkpoint_test', ),
        'one epoch of the toy detector, then tools/test.py on it'),
    CoveredBy(
        'python tools/train.py configs/toy/mask_rcnn_swin_acmix_toy_coco.py '
        '--resume',
        (E2E + 'test_resume_continues_at_the_right_iteration',
         E2E + 'test_killed_run_resumes_from_last_checkpoint'),
        'resume from a checkpoint and after a kill'),
    CoveredBy(
        re.compile(r'tools/dist_(train|test)\.sh '
                   r'configs/mask_rcnn_swin_acmix_t_1x_coco\.py'
                   r'( \S+\.pth)? 8'),
        ('tests/test_swin_acmix.py::test_config_builds', DIST_TOY),
        'the config builds; the toy detector with 2 CPU processes'),
    CoveredBy(
        re.compile(r'NNODES=2 NODE_RANK=[01] MASTER_ADDR=\S+ PORT=\d+ '
                   r'tools/dist_train\.sh \S+\.py 8'),
        (E2E + 'test_dist_train_two_simulated_nodes', ),
        'two simulated nodes of one CPU process each'),
    CoveredBy(
        'tools/dist_train.sh configs/toy/mask_rcnn_swin_acmix_toy_coco.py 2',
        (DIST_TOY, ), 'the same command'),
]

PAGES_RUN_BY = [
    PageRunBy('docs/checkpoint_loading.md',
              ('tests/test_checkpoint_tools.py::test_doc_commands', )),
    PageRunBy('docs/checkpoints.md', (
        'tests/test_checkpoints_doc.py::test_every_command_is_run_here',
        'tests/test_checkpoints_doc.py::test_converter_commands',
        'tests/test_checkpoints_doc.py::test_training_commands')),
    PageRunBy('docs/mim.md', (
        'tests/test_packaging.py::test_mim_train_test_search_from_the_wheel',
        'tests/test_packaging.py::test_sdist_installs',
        'tests/test_packaging.py::test_documented_tool_commands')),
    PageRunBy('docs/reproduce.md', (
        'tests/test_reproduce.py::test_docs_commands_are_those_the_tests_run',
        'tests/test_reproduce.py::'
        'test_dry_run_coco_retinanet_prints_the_four_rows',
        'tests/test_reproduce.py::'
        'test_dry_run_slurm_trains_the_init_checkpoints_of_earlier_rows',
        'tests/test_reproduce.py::test_reproduce_toy_row_end_to_end')),
    PageRunBy('docs/deployment.md', (
        'tests/test_export.py::test_deployment_doc_commands_are_export_runs',
        'tests/test_export.py::test_deployment_doc_commands')),
    PageRunBy('docs/performance_checks.md', (
        'tests/test_performance_checks.py::test_the_page_runs_these_commands',
        'tests/test_performance_checks.py::'
        'test_device_check_without_cuda_skips_the_cuda_parts',
        'tests/test_performance_checks.py::'
        'test_benchmark_commands_on_a_toy_backbone',
        'tests/test_performance_checks.py::'
        'test_bare_gpu_wheels_are_the_stack_beyond_the_image',
        'tests/test_performance_checks.py::'
        'test_bare_gpu_commands_in_an_environment_of_the_image_packages')),
]

HOW_TO_COVER = """
Every shell command in the docs must run in a test. For each command above:
- light (seconds: --help, --dry-run, toy inputs) or made light by appended
  arguments: add Runs(pattern, expected output[, appended arguments][,
  slow=True if it takes over ~10 s]) to RUN_HERE in tests/test_docs.py,
  which runs it from a workspace with tools/, configs/ and toy data;
- heavy: add CoveredBy(pattern, ('tests/test_x.py::test_y', ...), why) to
  COVERED_BY, naming the tests that run it or its toy stand-in (write one if
  none does);
- a page whose own tests read and run all its commands: add it to
  PAGES_RUN_BY with those tests;
- a usage synopsis with placeholders, or a command no test can run (GPU
  install, Slurm): put it in a ```text block with a sentence saying why.
A pattern is the exact command (str) or re.compile(...) matching it whole.
"""


def doc_pages():
    return [REPO_ROOT / 'README.md'] + sorted(
        (REPO_ROOT / 'docs').rglob('*.md'))


def _strip_comment(line):
    """``line`` without a ``# comment`` outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char == '#' and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def markdown_lines(text):
    """``(line number, line, language)`` for each line of Markdown ``text``
    but the fences; ``language`` is the code block's (``''`` if it names
    none), None outside code blocks."""
    fence = language = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r'(`{3,}|~{3,})\s*([\w+-]*)', stripped)
            if match:
                fence, language = match.groups()
                continue
        elif stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = language = None
            continue
        yield number, line, language


def shell_commands(text):
    """``[(line number, command)]`` of the shell blocks of Markdown
    ``text``."""
    commands, pending, start = [], '', 0
    for number, line, language in markdown_lines(text):
        if language not in SHELL_LANGUAGES:
            continue
        part = _strip_comment(line.strip()).strip()
        if not pending:
            start = number
            part = re.sub(r'^\$\s+', '', part)
        if part.endswith('\\'):
            pending += part[:-1] + ' '
            continue
        command = ' '.join((pending + part).split())
        pending = ''
        if command:
            commands.append((start, command))
    return commands


def documented_commands():
    """``[(where, command)]`` for every page, ``where`` as ``path:line``."""
    return [(f'{page.relative_to(REPO_ROOT)}:{number}', command)
            for page in doc_pages()
            for number, command in shell_commands(page.read_text())]


def matches(pattern, command):
    if isinstance(pattern, re.Pattern):
        return pattern.fullmatch(command) is not None
    return pattern == command


def commands_run_here():
    """Each documented command that an entry of RUN_HERE runs, once, as
    ``(command, where, entry)``."""
    found = {}
    for where, command in documented_commands():
        for entry in RUN_HERE:
            if matches(entry.pattern, command):
                found.setdefault(command, (where, entry))
    return [pytest.param(command, where, entry, id=where,
                         marks=[pytest.mark.slow] if entry.slow else [])
            for command, (where, entry) in found.items()]


def test_shell_commands_parsing():
    text = '\n'.join([
        'prose', '```bash', '# a comment', 'python a.py \\',
        "    --x 'b # c'   # trailing", '$ echo  one', '```', '```text',
        'CONFIG CHECKPOINT', '```', '- item', '  ```sh', '  bash b.sh',
        '  ```', '```python', 'import os', '```'
    ])
    assert shell_commands(text) == [(4, "python a.py --x 'b # c'"),
                                    (6, 'echo one'), (13, 'bash b.sh')]


def test_every_documented_command_is_covered():
    uncovered = [
        f'{where}: {command}' for where, command in documented_commands()
        if not any(matches(entry.pattern, command)
                   for entry in RUN_HERE + COVERED_BY)
        and where.split(':')[0] not in {e.page for e in PAGES_RUN_BY}
    ]
    assert not uncovered, ('documented commands that no test runs:\n' +
                           '\n'.join(uncovered) + '\n' + HOW_TO_COVER)


def test_every_table_entry_matches_a_documented_command():
    commands = [command for _, command in documented_commands()]
    stale = [entry.pattern for entry in RUN_HERE + COVERED_BY
             if not any(matches(entry.pattern, c) for c in commands)]
    assert not stale, (f'entries of tests/test_docs.py that match no '
                       f'documented command (remove or update them): {stale}')


def _missing_test(node):
    """Why ``node`` (``tests/x.py::name`` or ``...::Class::name``) names no
    test function, or None."""
    path, *names = node.split('::')
    if not (REPO_ROOT / path).is_file():
        return f'{node}: no file {path}'
    if not names:
        return None
    module = importlib.import_module(Path(path).stem)
    target = module
    for name in names:
        target = getattr(target, re.sub(r'\[.*\]$', '', name), None)
        if target is None:
            return f'{node}: no {name} in {path}'
    if not (callable(target) and target.__name__.startswith('test')):
        return f'{node}: not a test function'
    return None


def test_covering_tests_exist():
    problems = []
    for entry in COVERED_BY:
        for node in entry.tests:
            if '::' not in node:  # a script that runs the command
                script = (REPO_ROOT / node)
                needle = next(word for word in entry.pattern.split()
                              if word.endswith(('.sh', '.py')))
                if not script.is_file() or needle not in script.read_text():
                    problems.append(f'{node} does not run {needle}')
                continue
            problem = _missing_test(node)
            if problem:
                problems.append(problem)
    for entry in PAGES_RUN_BY:
        for node in entry.tests:
            problem = _missing_test(node)
            source = REPO_ROOT / node.split('::')[0]
            if problem is None and Path(entry.page).name not in (
                    source.read_text()):
                problem = f'{node} does not read {entry.page}'
            if problem:
                problems.append(problem)
    assert not problems, '\n'.join(problems)


@pytest.fixture(scope='module')
def docs_workspace(tmp_path_factory):
    """Where the commands of RUN_HERE run as documented: the repository's
    tools/, .dev_scripts/, configs/ and tests/ (links; benchmark_unfold.py
    loads the oracles in tests/), small toy COCO, and stand-ins for what
    tools/main_job.sh leaves in work_dirs/main_job: a checkpoint of the toy
    Mask R-CNN (freshly built, with the class names) and a log."""
    workspace = tmp_path_factory.mktemp('docs_workspace')
    for name in ('tools', '.dev_scripts', 'configs', 'tests'):
        (workspace / name).symlink_to(REPO_ROOT / name)
    (workspace / 'docs').mkdir()
    toy_data.make_coco(workspace / 'data/toy/coco', num_train=2, num_val=2)
    main_job = workspace / 'work_dirs/main_job'
    main_job.mkdir(parents=True)
    save_fresh_checkpoint(
        TOY_DET, main_job / 'epoch_8.pth',
        {'dataset_meta': {'classes': toy_data.COCO_CLASSES}})
    write_lines(main_job / '20250101_000000/vis_data/scalars.json', [
        {'loss': 3.4562, 'epoch': 1, 'iter': 1, 'step': 1},
        {'loss': 0.3202, 'epoch': 8, 'iter': 128, 'step': 128},
        {'coco/bbox_mAP': 0.611, 'coco/segm_mAP': 0.651, 'step': 8},
    ])
    return workspace


@pytest.mark.parametrize('command, where, entry', commands_run_here())
def test_documented_command_runs(command, where, entry, docs_workspace):
    run = f'{command} {entry.append}'.strip()
    proc = subprocess.run(['bash', '-c', run], cwd=docs_workspace,
                          env=tool_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (
        f'{where}: `{run}` exited {proc.returncode}\n'
        f'{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
    assert entry.expect in proc.stdout, (
        f'{where}: `{run}` printed no {entry.expect!r}:\n'
        f'{proc.stdout[-2000:]}')


# ------------------------------------------------------- the pages themselves

README = REPO_ROOT / 'README.md'
CARD_TITLE = '## Train RetinaNet PVT-ACmix-S on COCO with 8 GPUs and evaluate'
CARD_COMMANDS = [
    'tools/dist_train.sh configs/retinanet_pvt_acmix_s_1x_coco.py 8',
    'tools/dist_test.sh configs/retinanet_pvt_acmix_s_1x_coco.py '
    'work_dirs/retinanet_pvt_acmix_s_1x_coco/epoch_12.pth 8',
]
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def test_readme_is_short_with_the_card_job_near_the_top():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES
    assert CARD_TITLE in lines[:60]
    commands = [command for _, command in shell_commands(text)]
    for command in CARD_COMMANDS:
        assert command in commands
    # tools/analysis_tools/paper_table.py rewrites what is between the markers
    starts = [i for i, line in enumerate(lines)
              if line == '<!-- model-zoo-summary:start -->']
    ends = [i for i, line in enumerate(lines)
            if line == '<!-- model-zoo-summary:end -->']
    assert len(starts) == len(ends) == 1 and starts[0] < ends[0]


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(page):
    return {github_anchor(line.lstrip('#'))
            for _, line, language in markdown_lines(page.read_text())
            if language is None and re.match(r'#{1,6} ', line)}


def test_links_between_pages_resolve():
    """Every relative link and image of README.md and docs/ names a file
    that exists and, after ``#``, a heading of it."""
    broken = []
    for page in doc_pages():
        for number, line, language in markdown_lines(page.read_text()):
            if language is not None:
                continue
            for target in LINK.findall(line):
                if re.match(r'[a-z]+:', target):  # http:, mailto:
                    continue
                path, _, anchor = target.partition('#')
                linked = (page.parent / path).resolve() if path else page
                if not linked.exists():
                    broken.append(f'{page.name}:{number}: no {target}')
                    continue
                if anchor and anchor not in anchors(linked):
                    broken.append(f'{page.name}:{number}: no heading for '
                                  f'#{anchor} in {linked.name}')
    assert not broken, '\n'.join(broken)
