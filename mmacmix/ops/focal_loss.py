"""``sigmoid_focal_loss_forward`` / ``_backward`` as mmcv 2.1.0's CUDA
kernels compute them (its CPU build has none): the loss and its gradient
per logit, before mmcv's reduction."""
import torch

_FLT_MIN = torch.finfo(torch.float32).tiny


def _terms(input, target, weight):
    """Float copies of the logits, ``p = sigmoid``, the positive mask (the
    target's class) and the per-row class weight."""
    if input.dim() != 2 or target.dim() != 1 or len(target) != len(input):
        raise ValueError(
            'sigmoid_focal_loss: input must be (N, C) and target (N, ), not '
            f'{tuple(input.shape)} and {tuple(target.shape)}')
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    x = input.to(dtype)
    p = 1 / (1 + torch.exp(-x))
    classes = torch.arange(input.size(1), device=input.device)
    positive = target.long()[:, None] == classes
    row_weight = None
    if weight is not None and weight.numel():
        if weight.dim() != 1 or len(weight) != input.size(1):
            raise ValueError('sigmoid_focal_loss: weight must be (C, ), not '
                             f'{tuple(weight.shape)}')
        # background rows (target == C) read past the end of weight in the
        # CUDA kernel; here they are not weighted
        inside = (target >= 0) & (target < input.size(1))
        row_weight = torch.where(
            inside, weight.to(dtype)[target.clamp(0, input.size(1) - 1)],
            1)[:, None]
    return p, positive, row_weight


def sigmoid_focal_loss_forward(input, target, weight, output, gamma, alpha):
    """The focal loss of each logit, written into ``output``.

    Args:
        input (Tensor): (N, C) logits.
        target (Tensor): (N, ) int64 class of each row, C for background.
        weight (Tensor): (C, ) class weights, or empty for none.
        output (Tensor): (N, C), filled.
        gamma (float): the focusing exponent.
        alpha (float): the positives' balance weight.
    """
    p, positive, row_weight = _terms(input, target, weight)
    tiny = torch.tensor(_FLT_MIN, dtype=p.dtype)
    term_p = torch.pow(1 - p, gamma) * torch.log(torch.maximum(p, tiny))
    term_n = torch.pow(p, gamma) * torch.log(torch.maximum(1 - p, tiny))
    loss = torch.where(positive, -alpha * term_p, -(1 - alpha) * term_n)
    if row_weight is not None:
        loss = loss * row_weight
    output.copy_(loss)


def sigmoid_focal_loss_backward(input, target, weight, grad_input, gamma,
                                alpha):
    """The focal loss's derivative with respect to each logit, written into
    ``grad_input`` (mmcv multiplies it by the incoming gradient); the
    arguments as :func:`sigmoid_focal_loss_forward`'s."""
    p, positive, row_weight = _terms(input, target, weight)
    tiny = torch.tensor(_FLT_MIN, dtype=p.dtype)
    term_p = torch.pow(1 - p, gamma) * (
        1 - p - (gamma * p * torch.log(torch.maximum(p, tiny))))
    term_n = torch.pow(p, gamma) * (
        gamma * (1 - p) * torch.log(torch.maximum(1 - p, tiny)) - p)
    grad = torch.where(positive, -alpha * term_p, -(1 - alpha) * term_n)
    if row_weight is not None:
        grad = grad * row_weight
    grad_input.copy_(grad)
