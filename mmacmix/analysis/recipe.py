"""A config's training recipe in a few words per item, read from the resolved
config: what docs/recipes.md audits against the paper's Appendix B (a test
checks that the two agree)."""
from mmengine.config import Config

# item -> column label of docs/recipes.md
ITEMS = {
    'optimizer': 'optimizer',
    'lr': 'lr',
    'weight_decay': 'weight decay',
    'batch': 'batch (GPUs × per GPU)',
    'schedule': 'schedule',
    'warmup': 'warm-up',
    'augmentation': 'augmentation',
    'test_size': 'test size',
    'drop_path': 'drop path',
    'init': 'init',
}
# pipeline steps that are not augmentation
_PLUMBING = ('Load', 'Pack', 'Normalize', 'Pad', 'ImageToTensor', 'Collect',
             'DefaultFormatBundle')


def _num(value):
    return f'{value:g}'


def _steps(pipeline):
    return [t for t in pipeline if not t['type'].startswith(_PLUMBING)]


def _size(scale):
    return '×'.join(map(str, scale)) if isinstance(scale, (list, tuple)) \
        else str(scale)


def _augment(step):
    kind = step['type']
    if kind in ('Resize', 'RandomResize', 'RandomChoiceResize'):
        scale = step.get('scale')
        if kind == 'RandomResize':
            text = f'{kind} {_size(scale[0])}-{_size(scale[1])}' if \
                isinstance(scale[0], (list, tuple)) else \
                f'{kind} {_size(scale)}'
            if step.get('ratio_range'):
                text += ' ×{:g}-{:g}'.format(*step['ratio_range'])
            return text
        if kind == 'RandomChoiceResize':
            shorts = sorted({min(s) for s in step['scales']})
            return f'{kind} short {shorts[0]}-{shorts[-1]}'
        return f'Resize {_size(scale)}'
    if kind == 'RandomFlip':
        return 'flip'
    if kind in ('RandomCrop', 'RandomResizedCrop'):
        size = step.get('crop_size', step.get('scale'))
        return f'{kind} {_size(size)}'
    if kind == 'RandomChoice':  # e.g. mmdet's 3x multi-scale with crop
        return 'one of (' + ' or '.join(
            ' + '.join(_augment(t) for t in branch)
            for branch in step['transforms']) + ')'
    if kind == 'RandomErasing':
        return f'RandomErasing {_num(step["erase_prob"])}'
    return kind


def summarize(cfg: Config) -> dict:
    """``{item: text}`` of the recipe of ``cfg`` (resolved), items as in
    :data:`ITEMS`."""
    optim = cfg.optim_wrapper.optimizer
    name = optim.type + (f' (momentum {_num(optim.momentum)})'
                         if 'momentum' in optim else '')
    clip = cfg.optim_wrapper.get('clip_grad')
    if clip:
        name += f', grad clip {_num(clip["max_norm"])}'
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        name += ', AMP'
    per_gpu = cfg.train_dataloader.batch_size
    total = cfg.get('auto_scale_lr', {}).get('base_batch_size')
    batch = (f'{total} ({total // per_gpu}×{per_gpu})' if total else
             f'? (×{per_gpu})')

    train = cfg.train_cfg
    by_epoch = train.get('type', 'EpochBasedTrainLoop').startswith('Epoch') \
        or 'max_epochs' in train
    length = (f'{train.max_epochs} ep' if by_epoch else
              f'{train.max_iters // 1000}k it')
    warmup, decay = '—', []
    schedulers = cfg.param_scheduler
    for sched in schedulers if isinstance(schedulers, list) else \
            [schedulers]:
        kind = sched['type']
        if kind == 'LinearLR':
            unit = 'ep' if sched.get('by_epoch', True) else 'it'
            warmup = (f'linear {sched.get("end")} {unit} from '
                      f'×{_num(sched.get("start_factor", 1 / 3))}')
        elif kind == 'MultiStepLR':
            decay.append('×{} at {}'.format(
                _num(sched.get('gamma', 0.1)),
                ', '.join(map(str, sched['milestones']))))
        elif kind == 'CosineAnnealingLR':
            decay.append('cosine' + (f' to {_num(sched.eta_min)}'
                                     if sched.get('eta_min') else ''))
        elif kind == 'PolyLR':
            decay.append(f'poly {_num(sched.power)}')
        else:
            decay.append(kind)
    schedule = ', '.join([length] + decay)

    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    augment = [_augment(t) for t in _steps(dataset.pipeline)]
    model = cfg.model
    for batch_aug in model.get('train_cfg', {}).get('augments', []):
        augment.append(f'{batch_aug.type} {_num(batch_aug.alpha)}')
    if cfg.train_dataloader.get('sampler', {}).get(
            'type') == 'RepeatAugSampler':
        augment.append('repeated aug')
    loss = model.get('head', {}).get('loss', {})
    if loss.get('type') == 'LabelSmoothLoss':
        augment.append(f'label smoothing {_num(loss.label_smooth_val)}')

    test = cfg.test_dataloader.dataset
    while 'dataset' in test:
        test = test.dataset
    test_steps = []
    for step in _steps(test.pipeline):
        if step['type'] == 'Resize':
            test_steps.append(_size(step['scale']))
        elif step['type'] == 'ResizeEdge':
            test_steps.append(f'{step.get("edge", "short")} edge '
                              f'{step["scale"]}')
        elif step['type'] == 'CenterCrop':
            test_steps.append(f'center crop {step["crop_size"]}')
    backbone = model.backbone
    init = backbone.get('init_cfg') or {}
    return dict(
        optimizer=name,
        lr=_num(optim.lr),
        weight_decay=_num(optim.get('weight_decay', 0)),
        batch=batch,
        schedule=schedule,
        warmup=warmup,
        augmentation=', '.join(augment),
        test_size=', '.join(test_steps),
        drop_path=_num(backbone.get('drop_path_rate', 0)),
        init=init.get('checkpoint', 'scratch') if isinstance(init, dict)
        else 'scratch')
