"""FusedSGD: SGD's arithmetic and state, without cloning channels_last parameters."""

import pytest
import torch

from cnnarch.train.optim import FusedSGD, dense_order


def _params():
    g = torch.Generator().manual_seed(0)
    conv = torch.randn(8, 4, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
    return [conv, torch.randn(8, generator=g), torch.randn(5, 8, generator=g)]


@pytest.mark.parametrize("kw", [
    dict(momentum=0.9, weight_decay=1e-4),
    dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(momentum=0.0, weight_decay=1e-4),
    dict(momentum=0.9, dampening=0.1, maximize=True),
])
def test_matches_torch_sgd(kw):
    ours = [p.clone().requires_grad_() for p in _params()]
    ref = [p.clone().requires_grad_() for p in _params()]
    opt, ref_opt = FusedSGD(ours, lr=0.1, **kw), torch.optim.SGD(ref, lr=0.1, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        for a, b in zip(ours, ref, strict=True):
            grad = torch.randn(a.shape, generator=g).contiguous(memory_format=torch.channels_last) \
                if a.dim() == 4 else torch.randn(a.shape, generator=g)
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        if kw["momentum"]:
            torch.testing.assert_close(opt.state[a]["momentum_buffer"], ref_opt.state[b]["momentum_buffer"])
    assert ours[0].is_contiguous(memory_format=torch.channels_last)  # the layout is kept
    if kw["momentum"]:  # the buffer lives in the parameter's layout, so a checkpoint keeps it
        assert opt.state[ours[0]]["momentum_buffer"].is_contiguous(memory_format=torch.channels_last)


def test_no_copies_of_channels_last_weights():
    from torch.profiler import ProfilerActivity, profile

    p = torch.randn(64, 64, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    opt = FusedSGD([p], lr=0.1, momentum=0.9)
    for _ in range(2):
        p.grad = torch.randn_like(p)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            opt.step()
    names = {e.name for e in prof.events()}
    assert "aten::_fused_sgd_" in names
    assert not names & {"aten::clone", "aten::copy_"}, names


def test_gradient_in_another_layout():
    """A channels_last weight with an NCHW gradient: the result is SGD's (torch 2.14's own
    fused CPU step updates the wrong elements here)."""
    p = torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    q = p.detach().contiguous().requires_grad_()
    opt, ref = FusedSGD([p], lr=0.1, momentum=0.9), torch.optim.SGD([q], lr=0.1, momentum=0.9)
    grad = torch.randn(8, 4, 3, 3)  # NCHW gradient for a channels_last parameter
    p.grad, q.grad = grad.clone(), grad.clone()
    opt.step()
    ref.step()
    torch.testing.assert_close(p, q)


def test_state_dict_round_trip():
    params = [p.requires_grad_() for p in _params()]
    opt = FusedSGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    again = FusedSGD(params, lr=0.1, momentum=0.9)
    again.load_state_dict(opt.state_dict())
    for p in params:
        torch.testing.assert_close(again.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
        p.grad = torch.randn_like(p)
    again.step()  # continues from the loaded buffers (their layout matches the parameters)


def test_dense_order():
    x = torch.empty(2, 3, 4, 5)
    assert dense_order(x) == (0, 1, 2, 3)
    assert dense_order(x.contiguous(memory_format=torch.channels_last)) == (0, 2, 3, 1)
    assert dense_order(x[:, :, ::2]) is None  # strided: not dense


def test_step_hooks_run_once_per_step():
    p = torch.randn(4, requires_grad=True)
    opt = FusedSGD([p], lr=0.1, momentum=0.9)
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    p.grad = torch.ones(4)
    opt.step()  # the fused path
    opt.step(closure=lambda: 0.0)  # a closure: SGD's own step, reached from FusedSGD's
    assert len(calls) == 2
