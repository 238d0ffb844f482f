"""No module imports from a layer above its own (data/ never imports evaluate/, models/ never train, ...)."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "djenerator"

# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    {"io", "presets", "dsp", "budget"},
    {"config", "audio"},
    {"losses", "synth", "checkpoint"},
    {"augment", "health", "data", "models", "distributed", "latents", "ema", "optim"},
    {"generate", "stream"},  # one generation path: clips (generate) and streamed pieces (stream) call each other
    {"evaluate"},
    {"train", "train_report", "codec_train", "base"},  # base: shipped weights that runs start from
    {"pipeline"},
    {"server"},
    {"cli", "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
# the one way up: config.validate reads the families' tables inside the function, so config imports without torch
LAZY_TABLES = {("config", "losses"), ("config", "augment"), ("config", "models")}


def imported_units(path: Path) -> set[str]:
    """The top-level modules or packages of djenerator that ``path`` imports, lazily or not."""
    package = path.relative_to(SRC).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            out |= {target[0]} if target else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("djenerator."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("djenerator.")}
    return out


def test_every_module_has_a_layer():
    units = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")} - {"__init__"}
    assert units <= set(LEVEL), f"place {sorted(units - set(LEVEL))} in LAYERS"


def test_no_module_imports_from_above():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        unit = path.relative_to(SRC).parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        upward += [f"{path.relative_to(SRC)} imports {u}" for u in imported_units(path)
                   if u in LEVEL and LEVEL[u] > LEVEL[unit] and (unit, u) not in LAZY_TABLES]
    assert not upward, "; ".join(upward)


def test_config_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, djenerator.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=SRC.parent).returncode == 0
