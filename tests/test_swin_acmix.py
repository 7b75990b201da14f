"""The SwinACmix backbone: official sizes, the dense-prediction interface,
initialisation, and equality with mmdet's Swin when attention-only."""
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModule

import mmacmix  # noqa: F401  (registers SwinACmix)
from mmacmix.models.backbones import SwinACmix

MINI = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])


def shift_kernels(backbone):
    return [
        m.dep_conv.weight.detach().clone() for m in backbone.modules()
        if hasattr(m, 'dep_conv')
    ]


@pytest.mark.parametrize('arch, expected', [('tiny', 28_649_908),
                                            ('small', 50_345_080)])
def test_parameter_count_equals_official(arch, expected):
    """The official counts are of the whole classifier: backbone, final
    LayerNorm (our norm3) and the 1000-class head."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(type='SwinACmix', arch=arch, out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=1000,
                    in_channels=768)))
    assert sum(p.numel() for p in classifier.parameters()) == expected


def test_arch_zoo():
    tiny = SwinACmix('tiny')
    assert [len(s.blocks) for s in tiny.stages] == [2, 2, 6, 2]
    assert [s.blocks[0].attn.num_heads for s in tiny.stages] == [3, 6, 12, 24]
    assert tiny.num_features == [96, 192, 384, 768]
    assert tiny.stages[0].blocks[0].attn.window_size == 7
    assert [b.attn.shift_size for b in tiny.stages[2].blocks[:3]] == [0, 3, 0]
    assert SwinACmix.arch_zoo['small']['depths'] == [2, 2, 18, 2]


def test_bad_arch():
    with pytest.raises(ValueError,
                       match=r"arch must be one of \['s', 'small', 't', .*"
                       r"got 'huge'"):
        SwinACmix('huge')
    with pytest.raises(ValueError, match='keys'):
        SwinACmix(dict(embed_dims=32, depths=[2]))
    with pytest.raises(ValueError, match='out_indices'):
        SwinACmix(MINI, out_indices=(4, ))


@pytest.mark.parametrize('size', [(224, 224), (97, 131), (512, 512),
                                  (800, 1333)])
@torch.no_grad()
def test_any_input_size_gives_ceil_strides(size):
    backbone = SwinACmix(MINI).eval()
    outs = backbone(torch.randn(1, 3, *size))
    height, width = size
    for i, out in enumerate(outs):
        stride = 4 * 2**i
        assert out.shape == (1, 32 * 2**i, -(-height // stride),
                             -(-width // stride))
        assert out.is_contiguous()


def test_out_indices_and_norms():
    backbone = SwinACmix(MINI, out_indices=(1, -1))
    assert backbone.out_indices == [1, 3]
    assert hasattr(backbone, 'norm1') and hasattr(backbone, 'norm3')
    assert not hasattr(backbone, 'norm0')
    outs = backbone(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 256]


def test_frozen_stages():
    backbone = SwinACmix(MINI, frozen_stages=2).train()
    for module in (backbone.patch_embed, backbone.stages[0],
                   backbone.stages[1], backbone.norm0, backbone.norm1):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    for module in (backbone.stages[2], backbone.norm2):
        assert module.training
        assert all(p.requires_grad for p in module.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = SwinACmix(MINI, drop_path_rate=0.)
    checkpointed = SwinACmix(MINI, drop_path_rate=0., with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 72)
    for model in (plain, checkpointed):
        sum(out.sum() for out in model(x)).backward()
    for (name, a), b in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_drop_path_schedule():
    backbone = SwinACmix(MINI, drop_path_rate=0.3)
    rates = [b.drop_path_rate for s in backbone.stages for b in s.blocks]
    torch.testing.assert_close(
        torch.tensor(rates), torch.linspace(0, 0.3, 8))


def test_bf16_autocast_on_cpu():
    backbone = SwinACmix(MINI).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = backbone(torch.randn(1, 3, 97, 131))
    sum(out.float().sum() for out in outs).backward()
    assert all(torch.isfinite(out).all() for out in outs)


def test_absolute_position_embedding_is_resized():
    backbone = SwinACmix(MINI, use_abs_pos_embed=True, pretrain_img_size=64)
    assert backbone.absolute_pos_embed.shape == (1, 32, 16, 16)
    outs = backbone(torch.randn(1, 3, 97, 131))
    assert outs[0].shape[-2:] == (25, 33)


def test_init_cfg_initialisers_keep_the_shift_kernels():
    backbone = SwinACmix(MINI, init_cfg=dict(type='Kaiming', layer='Conv2d'))
    kernels = shift_kernels(backbone)
    projection = backbone.patch_embed.projection.weight.detach().clone()
    backbone.init_weights()
    assert not torch.equal(backbone.patch_embed.projection.weight, projection)
    for before, after in zip(kernels, shift_kernels(backbone)):
        assert torch.equal(before, after)


def test_parent_init_weights_keeps_the_shift_kernels():
    """A model that re-initialises every Conv2d (mmengine init_cfg at the
    top) and a plain init_weights() both leave the shift kernels."""

    class Detector(BaseModule):

        def __init__(self):
            super().__init__(
                init_cfg=dict(type='Normal', layer='Conv2d', std=1.))
            self.backbone = SwinACmix(MINI)

    model = Detector()
    kernels = shift_kernels(model.backbone)
    model.init_weights()
    for before, after in zip(kernels, shift_kernels(model.backbone)):
        assert torch.equal(before, after)
    backbone = SwinACmix(MINI)
    backbone.init_weights()
    for before, after in zip(kernels, shift_kernels(backbone)):
        assert torch.equal(before, after)


def mmdet_to_swin_acmix(state):
    """mmdet SwinTransformer weights -> SwinACmix names, with rates (1, 0).

    mmdet's patch merging unfolds each 2x2 neighbourhood channel-major
    (channel c*4 + 2*dy + dx); ours concatenates the four neighbours in the
    official order (dy, dx) = (0,0), (1,0), (0,1), (1,1).
    """
    converted = {}
    for key, value in state.items():
        if key.endswith('relative_position_index'):
            continue
        if '.downsample.' in key:
            value = value.unflatten(-1, (-1, 4))[..., [0, 2, 1, 3]]
            value = value.transpose(-1, -2).flatten(-2)
        key = (key.replace('attn.w_msa.', 'attn.')
               .replace('ffn.layers.0.0.', 'mlp.fc1.')
               .replace('ffn.layers.1.', 'mlp.fc2.'))
        converted[key] = value
        if key.endswith('attn.qkv.weight'):
            converted[key.replace('qkv.weight', 'rates.rate1')] = torch.ones(1)
            converted[key.replace('qkv.weight', 'rates.rate2')] = torch.zeros(
                1)
    return converted


@torch.no_grad()
def test_attention_only_equals_mmdet_swin_with_padding():
    from mmdet.models.backbones import SwinTransformer
    torch.manual_seed(0)
    swin = SwinTransformer(
        embed_dims=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        window_size=7,
        drop_path_rate=0.,
        out_indices=(0, 1, 2, 3))
    swin.eval()  # (mmdet's train() returns None)
    for param in swin.parameters():
        param.add_(0.1 * torch.randn_like(param))
    ours = SwinACmix(MINI, drop_path_rate=0.).eval()
    missing, unexpected = ours.load_state_dict(
        mmdet_to_swin_acmix(swin.state_dict()), strict=False)
    assert not unexpected
    assert all('.attn.conv.' in key for key in missing)

    x = torch.randn(1, 3, 230, 301)  # every stage needs window padding
    for ours_out, swin_out in zip(ours(x), swin(x), strict=True):
        torch.testing.assert_close(ours_out, swin_out, rtol=1e-4, atol=1e-4)


CONFIGS = sorted(
    (Path(__file__).parents[1] / 'configs').glob('*swin_acmix*.py'))


def test_all_swin_acmix_configs_are_listed():
    assert {p.name for p in CONFIGS} >= {
        'swin_acmix_t_in1k.py', 'swin_acmix_s_in1k.py',
        'mask_rcnn_swin_acmix_t_1x_coco.py',
        'mask_rcnn_swin_acmix_t_3x_coco.py',
        'cascade_mask_rcnn_swin_acmix_t_3x_coco.py',
        'upernet_swin_acmix_t_160k_ade20k.py',
        'upernet_swin_acmix_s_160k_ade20k.py'
    }


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(
        imports=['mmacmix'], allow_failed_imports=False)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    backbone = model.backbone
    assert isinstance(backbone, SwinACmix)
    size = 'small' if '_s_' in path.name else 'tiny'
    assert [len(stage.blocks) for stage in backbone.stages
            ] == SwinACmix.arch_zoo[size]['depths']
    if path.name.endswith('_in1k.py'):
        assert backbone.out_indices == [3]
    else:
        assert backbone.out_indices == [0, 1, 2, 3]
        assert backbone.init_cfg == dict(
            type='Pretrained',
            checkpoint=f'checkpoints/swin_acmix_{size[0]}_in1k.pth',
            prefix='backbone.')
