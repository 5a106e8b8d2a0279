import nomyo_native


def test_native_core_version_matches_package():
    from importlib.metadata import version

    assert nomyo_native.__version__ == version("nomyo-native")
