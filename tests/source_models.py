"""The source models of the converter's tests: mmpretrain's and timm's
Swin-T with random weights, and the SAN authors' patchwise SAN
(hszhao/SAN, ``model/san.py``): a state dict under its names and shapes,
its checkpoint file as their trainer saves it, and its forward pass written
from the paper (not from their code, whose attention needs their CUDA
ops)."""
import torch
import torch.nn.functional as F

import mmacmix  # noqa: F401  (torchvision importable: mmpretrain, timm)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter off its initialisation (norms, biases and the
    relative position tables included), so no weight goes unchecked."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def mmpretrain_swin_t() -> torch.nn.Module:
    """mmpretrain's Swin-T ImageNet classifier (as in its
    ``swin-tiny_16xb64_in1k.py``), random weights, eval mode."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return randomize(
            MODELS.build(
                dict(
                    type='ImageClassifier',
                    backbone=dict(
                        type='SwinTransformer', arch='tiny', img_size=224,
                        drop_path_rate=0.),
                    neck=dict(type='GlobalAveragePooling'),
                    head=dict(
                        type='LinearClsHead', num_classes=1000,
                        in_channels=768))))


def timm_swin_t() -> torch.nn.Module:
    """timm's ``swin_tiny_patch4_window7_224``, random weights, eval
    mode."""
    import timm
    return randomize(
        timm.create_model('swin_tiny_patch4_window7_224', pretrained=False))


SAN_10 = dict(layers=(2, 1, 2, 4, 1), kernels=(3, 7, 7, 7, 7))
SAN_NORM_STATS = ('weight', 'bias', 'running_mean', 'running_var',
                  'num_batches_tracked')


def san_state_dict(layers, kernels, num_classes=1000, seed=0):
    """Random weights under the names and shapes of SAN's patchwise model
    (``san(sa_type=1, ...)``): stem ``conv_in``/``bn_in``, per stage ``s`` a
    transition ``conv{s}``/``bn{s}`` and bottlenecks ``layer{s}.{b}``
    (``bn1``, ``sam``, ``bn2``, ``conv``), then ``fc``. Norms in eval
    form: running statistics of reasonable size. The attention weights
    are small, as trained ones are: SAN's are not normalised, so random
    ones of unit size grow the activations quadratically, block after
    block.

    Args:
        layers (tuple[int]): Bottlenecks per stage (SAN-10: 2, 1, 2, 4, 1).
        kernels (tuple[int]): Attention footprint side per stage.
        num_classes (int): Classes of ``fc``. Defaults to 1000.
        seed (int): Seed of the random values. Defaults to 0.

    Returns:
        dict: The state dict, as SAN's ``model.state_dict()`` names it.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def conv(key, out_channels, in_channels, bias=True, scale=1.):
        state[key + '.weight'] = scale * torch.randn(
            out_channels, in_channels, 1, 1,
            generator=generator) / in_channels**0.5
        if bias:
            state[key + '.bias'] = 0.1 * torch.randn(out_channels,
                                                     generator=generator)

    def norm(key, channels):
        values = dict(
            weight=1 + 0.1 * torch.randn(channels, generator=generator),
            bias=0.1 * torch.randn(channels, generator=generator),
            running_mean=0.1 * torch.randn(channels, generator=generator),
            running_var=0.5 + torch.rand(channels, generator=generator),
            num_batches_tracked=torch.tensor(100))
        state.update({f'{key}.{name}': values[name]
                      for name in SAN_NORM_STATS})

    conv('conv_in', 64, 3, bias=False)
    norm('bn_in', 64)
    in_channels = 64
    for s, (blocks, kernel) in enumerate(zip(layers, kernels)):
        c = 64 * 2**(s + 1) if s else 64
        conv(f'conv{s}', c, in_channels, bias=False)
        norm(f'bn{s}', c)
        rel, mid, share = c // 16, c // 4, 8
        for b in range(blocks):
            block = f'layer{s}.{b}.'
            norm(block + 'bn1', c)
            conv(block + 'sam.conv1', rel, c)
            conv(block + 'sam.conv2', rel, c)
            conv(block + 'sam.conv3', mid, c)
            norm(block + 'sam.conv_w.0', rel * (kernel**2 + 1))
            conv(block + 'sam.conv_w.2', mid // share, rel * (kernel**2 + 1),
                 bias=False)
            norm(block + 'sam.conv_w.3', mid // share)
            conv(block + 'sam.conv_w.5', kernel**2 * mid // share,
                 mid // share, scale=0.05)
            norm(block + 'bn2', mid)
            conv(block + 'conv', c, mid)
        in_channels = c
    state['fc.weight'] = torch.randn(
        num_classes, in_channels, generator=generator) / in_channels**0.5
    state['fc.bias'] = torch.zeros(num_classes)
    return state


def san_logits(state, x, layers, kernels):
    """SAN's patchwise network in eval mode, written from the paper
    (Zhao et al., CVPR 2020, eq. 4) with ``F.unfold``: per pixel, weights
    for the whole footprint from ``[query, keys of the footprint]`` by the
    MLP ``conv_w``, each weight channel ``g`` shared by the value channels
    ``c`` with ``c % G == g``; keys and values reflection padded.

    Args:
        state (dict): SAN's weights (:func:`san_state_dict`).
        x (Tensor): ``(B, 3, H, W)`` images; H and W multiples of 32.
        layers (tuple[int]): Bottlenecks per stage.
        kernels (tuple[int]): Attention footprint side per stage.

    Returns:
        Tensor: ``(B, num_classes)`` logits.
    """
    def conv(key, x):
        return F.conv2d(x, state[key + '.weight'], state.get(key + '.bias'))

    def norm(key, x):
        return F.batch_norm(x, state[key + '.running_mean'],
                            state[key + '.running_var'],
                            state[key + '.weight'], state[key + '.bias'])

    def unfold(x, kernel):
        padded = F.pad(x, [kernel // 2] * 4, mode='reflect')
        return F.unfold(padded, kernel)  # (B, C * k*k, H*W), channel-major

    def attention(key, x, kernel):
        batch, _, height, width = x.shape
        q, k, v = (conv(f'{key}.conv{i}', x) for i in (1, 2, 3))
        hidden = torch.cat([q.flatten(2), unfold(k, kernel)], 1)[..., None]
        hidden = F.relu(norm(key + '.conv_w.0', hidden))
        hidden = conv(key + '.conv_w.2', hidden)
        hidden = F.relu(norm(key + '.conv_w.3', hidden))
        weights = conv(key + '.conv_w.5', hidden).view(
            batch, -1, kernel**2, height * width)
        values = unfold(v, kernel).view(batch, v.shape[1], kernel**2, -1)
        groups = v.shape[1] // weights.shape[1]
        out = (weights.repeat(1, groups, 1, 1) * values).sum(2)
        return out.view(batch, -1, height, width)

    x = F.relu(norm('bn_in', conv('conv_in', x)))
    for s, (blocks, kernel) in enumerate(zip(layers, kernels)):
        x = conv(f'conv{s}', F.max_pool2d(x, 2))
        for b in range(blocks):
            block = f'layer{s}.{b}'
            out = attention(block + '.sam', F.relu(norm(block + '.bn1', x)),
                            kernel)
            x = x + conv(block + '.conv', F.relu(norm(block + '.bn2', out)))
        x = F.relu(norm(f'bn{s}', x))
    return F.linear(x.mean((2, 3)), state['fc.weight'], state['fc.bias'])


def save_as_san_does(state, path):
    """Save ``state`` as SAN's ``tool/train.py`` saves a checkpoint: the
    weights of the DataParallel model (``module.`` keys) under
    ``state_dict``, beside the epoch, the optimizer and the accuracies.

    Args:
        state (dict): SAN's weights.
        path (str | Path): Where to save.
    """
    torch.save(
        {
            'epoch': 100,
            'state_dict': {'module.' + k: v for k, v in state.items()},
            'optimizer': {'state': {}, 'param_groups': [{'lr': 0.}]},
            'top1_val': 0.,
            'top5_val': 0.
        }, path)
