"""Pretrained ImageNet weights by name: torchvision's published files for the models that
share torchvision's layout (resnet18 ... resnet152, googlenet_tv).

``load_pretrained(model, name, weights=None)`` downloads the weight file into the torch
hub cache (``torch.hub.get_dir()/checkpoints``, where torchvision keeps the same files),
checks its SHA-256 against the hash prefix in the file's name (torchvision's convention:
``resnet50-0676ba61.pth`` starts with ``0676ba61``), loads it with ``strict=True`` and
attaches the evaluation transform the weights were trained for (``model.eval_transform``:
shorter side to 256 (232 for the V2 recipes), centre 224 x 224 crop, ImageNet mean and
std, the 1000 ImageNet class names). The file is written to a temporary name beside its
place and renamed only after the hash matched, with the normal file mode; a wrong hash
leaves nothing in the cache.

Accuracies are torchvision's published ImageNet-1K validation figures for each file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BASE_URL = "https://download.pytorch.org/models/"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Weights:
    """One published weight file and how its model must see images."""

    model: str  # our registry name
    name: str  # torchvision's enum name, e.g. IMAGENET1K_V1
    url: str
    resize: int  # shorter side before the centre crop
    top1: float  # ImageNet-1K validation accuracy (%), as torchvision publishes it
    top5: float
    crop: int = 224
    model_kwargs: dict = field(default_factory=dict)  # options the weights need

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The start of the file's SHA-256, as its name carries it (``name-<hash>.pth``)."""
        return Path(self.file_name).stem.rsplit("-", 1)[-1]

    def transform(self):
        """The :class:`~cnnarch.data.transform.EvalTransform` these weights expect."""
        from ..data.transform import EvalTransform

        return EvalTransform((3, self.crop, self.crop), IMAGENET_MEAN, IMAGENET_STD,
                             imagenet_classes(), resize=self.resize)


def _weights(model: str, name: str, file: str, resize: int, top1: float, top5: float,
             **model_kwargs) -> Weights:
    return Weights(model, name, BASE_URL + file, resize, top1, top5, model_kwargs=model_kwargs)


# torchvision's published files (torchvision.models.*_Weights); DEFAULT is torchvision's too.
WEIGHTS: dict[str, dict[str, Weights]] = {
    "resnet18": {"IMAGENET1K_V1": _weights("resnet18", "IMAGENET1K_V1", "resnet18-f37072fd.pth", 256, 69.758, 89.078)},
    "resnet34": {"IMAGENET1K_V1": _weights("resnet34", "IMAGENET1K_V1", "resnet34-b627a593.pth", 256, 73.314, 91.420)},
    "resnet50": {"IMAGENET1K_V1": _weights("resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", 256, 76.130, 92.862),
                 "IMAGENET1K_V2": _weights("resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 232, 80.858, 95.434)},
    "resnet101": {"IMAGENET1K_V1": _weights("resnet101", "IMAGENET1K_V1", "resnet101-63fe2227.pth", 256, 77.374, 93.546),
                  "IMAGENET1K_V2": _weights("resnet101", "IMAGENET1K_V2", "resnet101-cd907fc2.pth", 232, 81.886, 95.780)},
    "resnet152": {"IMAGENET1K_V1": _weights("resnet152", "IMAGENET1K_V1", "resnet152-394f9c45.pth", 256, 78.312, 94.046),
                  "IMAGENET1K_V2": _weights("resnet152", "IMAGENET1K_V2", "resnet152-f82ba261.pth", 232, 82.284, 96.002)},
    # ported from TensorFlow: expects torchvision's input re-normalisation (transform_input)
    "googlenet_tv": {"IMAGENET1K_V1": _weights("googlenet_tv", "IMAGENET1K_V1", "googlenet-1378be20.pth", 256,
                                               69.778, 89.530, transform_input=True)},
}
DEFAULT = {"resnet18": "IMAGENET1K_V1", "resnet34": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2",
           "resnet101": "IMAGENET1K_V2", "resnet152": "IMAGENET1K_V2", "googlenet_tv": "IMAGENET1K_V1"}


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class names in label order (torchvision's weight metadata)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def get_weights(model: str, weights: str | None = None) -> Weights:
    """The weight file ``weights`` (an enum name such as IMAGENET1K_V2, "DEFAULT" or None for
    torchvision's default) published for ``model``."""
    if model not in WEIGHTS:
        raise UserError(f"no pretrained weights for {model!r}; models with weights: "
                        f"{', '.join(WEIGHTS)}")
    name = DEFAULT[model] if weights in (None, "", "DEFAULT") else str(weights).upper()
    if name not in WEIGHTS[model]:
        raise UserError(f"{model} has no weights {weights!r}; choose one of "
                        f"{', '.join(['DEFAULT', *WEIGHTS[model]])}")
    return WEIGHTS[model][name]


def cache_dir() -> Path:
    """Where weight files are kept: the torch hub cache's checkpoints folder."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def download(weights: Weights, folder: str | os.PathLike | None = None, *,
             timeout: float = 60.0) -> Path:
    """The local path of ``weights``' file, downloaded (hash-checked, atomically) if absent."""
    folder = Path(folder) if folder is not None else cache_dir()
    path = folder / weights.file_name
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            digest = _fetch(weights.url, f, timeout)
            f.flush()
            os.fsync(f.fileno())
        if not digest.startswith(weights.hash_prefix):
            raise UserError(f"{weights.url}: SHA-256 {digest[:16]}... does not start with "
                            f"{weights.hash_prefix} (the hash in its name); nothing was saved")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fetch(url: str, out, timeout: float) -> str:
    """Stream ``url`` into the open file ``out``; returns the SHA-256 (hex) of what came."""
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(CHUNK):
                sha.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or first_line(exc)
        raise UserError(f"cannot download {url}: {reason} (offline? put the file in "
                        f"{cache_dir()})") from None
    return sha.hexdigest()


def load_pretrained(model, name: str, weights: str | Weights | None = None, *,
                    folder: str | os.PathLike | None = None):
    """Load the published weights ``weights`` of ``name`` into ``model`` (in place) and
    attach ``model.eval_transform`` and ``model.pretrained_weights``; returns the model.

    ``model`` must be ``name`` with 1000 classes; GoogLeNet's auxiliary heads are loaded
    when the model has them and left out when it has none. (``create_model(name,
    pretrained=True, weights=...)`` calls this.)
    """
    spec = weights if isinstance(weights, Weights) else get_weights(name, weights)
    if getattr(model, "num_classes", 1000) != 1000:
        raise UserError(f"ImageNet weights need num_classes=1000, got {model.num_classes}")
    state = _read(download(spec, folder))
    if not any(key.startswith("aux1.") for key in model.state_dict()):
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    for option, value in spec.model_kwargs.items():
        setattr(model, option, value)
    _load_strict(model, state, spec.file_name)
    model.eval_transform = spec.transform()
    model.pretrained_weights = f"{spec.model}.{spec.name}"
    return model


def _read(path: Path) -> dict:
    """A weight file's state_dict, read without running code from it (``weights_only``)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refused or not a torch file
        raise UserError(f"cannot load weights from {path} safely: {first_line(exc)} "
                        "(delete the file to download it again)") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state_dict")
    return state


def _load_strict(model, state: dict, source: str) -> None:
    """``load_state_dict(strict=True)``, a mismatch named in one line."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong = [k for k in ours if k in state and tuple(ours[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(f"{source} does not fit {getattr(model, 'registry_name', type(model).__name__)}: "
                        f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} "
                        f"other-shaped keys (e.g. {first})")
    model.load_state_dict(state, strict=True)
