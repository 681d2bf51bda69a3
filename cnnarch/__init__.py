from cnnarch.models import create_model, list_models  # noqa: F401
