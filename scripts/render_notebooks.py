"""Render executed copies of the notebooks to HTML for people who only want to read.

    python scripts/render_notebooks.py [--mode quick|full] [--out rendered] [NOTEBOOK ...]

The committed notebooks stay clean; the executed HTML (with every figure) goes to --out.
"""
import argparse
from pathlib import Path

from nbconvert import HTMLExporter

from iresnet_mini.notebook_runner import execute, notebooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: all numbered notebooks")
    parser.add_argument("--mode", choices=["quick", "full"], default="quick")
    parser.add_argument("--out", type=Path, default=Path("rendered"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks or notebooks():
        nb, seconds = execute(path, mode=args.mode)
        html, _ = HTMLExporter().from_notebook_node(nb)
        target = args.out / (path.stem + ".html")
        target.write_text(html, encoding="utf-8")
        print(f"{path.name}: executed in {seconds:.1f} s -> {target}")


if __name__ == "__main__":
    main()
