from audioclf.text import close_matches, did_you_mean, plural


def test_plural() -> None:
    assert plural(1, "window") == "1 window"
    assert plural(0, "window") == "0 windows"
    assert plural(2, "class", "classes") == "2 classes"


def test_did_you_mean() -> None:
    assert did_you_mean("cnn15", ["cnn14", "ast", "beats"]) == " did you mean 'cnn14'?"
    assert did_you_mean("zzz", ["cnn14", "ast"]) == ""
    assert close_matches("CNN14", ["cnn14", "cnn10"])[0] == "cnn14"  # case-insensitive, original spelling back
