"""torchvision parity: its state_dicts load with strict=True and give the same outputs."""

import pytest
import torch
import torchvision

from cnnarch.errors import UserError
from cnnarch.models import create_model
from cnnarch.models.compat import from_torchvision, load_torchvision_state_dict


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_parity(name, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = from_torchvision(name, path).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("aux", [False, True])
def test_googlenet_tv_parity(aux):
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=True).eval()
    ours = create_model("googlenet_tv", aux_logits=aux)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
    if aux:  # torchvision's training output is (logits, aux2, aux1); ours is named
        ours.train(), theirs.train()
        torch.manual_seed(1)
        t = theirs(x)
        torch.manual_seed(1)
        o = ours(x)
        assert torch.allclose(o.logits, t.logits, atol=1e-4)
        assert torch.allclose(o.aux1, t.aux_logits1, atol=1e-4)
        assert torch.allclose(o.aux2, t.aux_logits2, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "googlenet_tv"])
def test_training_gradients_match_torchvision(name):
    """Our stems take the max-pool before the ReLU (they commute): outputs *and* every
    parameter's gradient in training mode are torchvision's."""
    torch.manual_seed(0)
    if name == "googlenet_tv":
        theirs = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
        ours = create_model(name, aux_logits=False)
    else:
        theirs, ours = torchvision.models.resnet18(weights=None), create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.train(), theirs.train()
    x = torch.randn(2, 3, 64, 64)
    for model in (ours, theirs):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout mask
        model(x).square().mean().backward()
    grads = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[key].grad, rtol=1e-4, atol=1e-6, msg=key)


def test_mismatched_state_dict_is_one_clear_error():
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(UserError, match="does not fit resnet34: .*missing"):
        load_torchvision_state_dict(create_model("resnet34"), theirs)


def test_weights_file_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": Evil()}, path)
    with pytest.raises(UserError, match="safely"):
        from_torchvision("resnet18", path)
    assert not marker.exists()
