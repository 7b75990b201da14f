"""``ms_deform_attn_forward`` / ``_backward`` through mmcv's own PyTorch
form of multi-scale deformable attention (what mmcv runs on the CPU),
differentiated by autograd."""
import torch


def _attention(value, spatial_shapes, sampling_locations, attention_weights):
    # imported at call time: this module must not import mmcv while mmcv
    # imports mmcv._ext
    from mmcv.ops.multi_scale_deform_attn import \
        multi_scale_deformable_attn_pytorch
    return multi_scale_deformable_attn_pytorch(
        value, [tuple(shape) for shape in spatial_shapes.tolist()],
        sampling_locations, attention_weights)


def ms_deform_attn_forward(value, value_spatial_shapes,
                           value_level_start_index, sampling_locations,
                           attention_weights, im2col_step):
    """Multi-scale deformable attention, as ``mmcv._ext``'s.

    Args:
        value (Tensor): (bs, num_keys, num_heads, head_dims).
        value_spatial_shapes (Tensor): (num_levels, 2) ``h, w`` per level.
        value_level_start_index (Tensor): (num_levels, ) unused (the levels
            follow from their shapes).
        sampling_locations (Tensor): (bs, num_queries, num_heads,
            num_levels, num_points, 2) ``x, y`` in [0, 1].
        attention_weights (Tensor): (bs, num_queries, num_heads,
            num_levels, num_points).
        im2col_step (int): unused (a CUDA batching detail).

    Returns:
        Tensor: (bs, num_queries, num_heads * head_dims).
    """
    return _attention(value, value_spatial_shapes, sampling_locations,
                      attention_weights)


def ms_deform_attn_backward(value, value_spatial_shapes,
                            value_level_start_index, sampling_locations,
                            attention_weights, grad_output, grad_value,
                            grad_sampling_loc, grad_attn_weight, im2col_step):
    """The gradients of :func:`ms_deform_attn_forward` for ``grad_output``,
    added to ``grad_value``, ``grad_sampling_loc`` and ``grad_attn_weight``.
    Arguments as in the forward."""
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_()
                  for t in (value, sampling_locations, attention_weights)]
        output = _attention(inputs[0], value_spatial_shapes, *inputs[1:])
        grads = torch.autograd.grad(output, inputs, grad_output)
    for target, grad in zip(
            (grad_value, grad_sampling_loc, grad_attn_weight), grads):
        target += grad
