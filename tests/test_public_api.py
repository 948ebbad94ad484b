import keel
import keel.errors
import keel.models


def test_public_names_are_exactly_the_curated_ones() -> None:
    assert sorted(keel.__all__) == sorted([
        "KeelError", "Message", "Model", "ModelBehaviorError", "ModelResponse", "ModelSettings",
        "ProviderError", "Settings", "StructuredOutputError", "Tool", "ToolCall", "Usage", "UserError",
        "__version__", "get_model", "get_settings", "open_store", "tool",
    ])
    for name in keel.__all__:
        assert hasattr(keel, name), name
    for module in (keel.models, keel.errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_has_an_exit_code_by_family() -> None:
    from keel import errors

    assert errors.UnknownModelError("x").exit_code == 2
    assert errors.RateLimitedError("x").exit_code == 3
    assert errors.StructuredOutputError("x").exit_code == 4
    assert isinstance(errors.ScriptError("x"), AssertionError)
