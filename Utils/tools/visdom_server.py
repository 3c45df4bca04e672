"""Run the visdom server on an offline machine, on 127.0.0.1 only.

    python -m Utils.tools.visdom_server --setup            # once: the page's JS/CSS/fonts from the npm registry
    python -m Utils.tools.visdom_server [--port=8097] [--env_path=DIR]

`python -m visdom.server` first downloads ~20 scripts from CDNs (unpkg, cdn.plot.ly, d3js.org, cdnjs) and exits
when they are unreachable; it has no flag to skip that. `--setup` fetches the same files as npm packages with
`npm pack` (the npm registry is the one source a locked-down machine usually reaches), copies them under the names
visdom expects into its static folder and writes static/version.built, after which the page works offline. The
server itself is started through visdom.server.run_server.main, which does no download, bound to loopback.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["ASSETS", "MATHJAX_FILES", "static_dir", "assets_installed", "install_assets", "serve", "main"]

# (npm package@version, path inside the package, destination under static/) - the files visdom's build.py fetches.
_GLYPH = "dist/fonts/glyphicons-halflings-regular"
ASSETS: list[tuple[str, str, str]] = [
    ("jquery@3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    ("bootstrap@3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    ("bootstrap@3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    ("bootstrap@3.3.7", f"{_GLYPH}.eot", "fonts/glyphicons-halflings-regular.eot"),
    ("bootstrap@3.3.7", f"{_GLYPH}.woff2", "fonts/glyphicons-halflings-regular.woff2"),
    ("bootstrap@3.3.7", f"{_GLYPH}.woff", "fonts/glyphicons-halflings-regular.woff"),
    ("bootstrap@3.3.7", f"{_GLYPH}.ttf", "fonts/glyphicons-halflings-regular.ttf"),
    ("bootstrap@3.3.7", f"{_GLYPH}.svg", "fonts/glyphicons-halflings-regular.svg"),
    # build.py stores the svg under its URL fragment too; the existence check looks for that name
    ("bootstrap@3.3.7", f"{_GLYPH}.svg", "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular"),
    ("react@16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    ("react-dom@16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    ("react-modal@3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    ("plotly.js-dist-min@2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    ("sjcl@1.0.7", "sjcl.js", "js/sjcl.js"),
    ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    ("layout-bin-packer@1.4.0", "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    ("d3@3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    ("d3-selection-multi@1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    ("save-svg-as-png@1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    ("react-resizable@1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
    ("react-grid-layout@0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    ("classnames@2.2.5", "index.js", "fonts/classnames"),
]
MATHJAX_FILES = [
    "config/Safe.js", "config/TeX-AMS-MML_HTMLorMML.js", "extensions/Safe.js",
    "jax/output/SVG/fonts/TeX/fontdata.js", "jax/output/SVG/jax.js",
    "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js", "jax/output/SVG/config.js", "MathJax.js",
]
ASSETS += [("mathjax@2.7.5", f, f"js/mathjax/2.7.5/{f}") for f in MATHJAX_FILES]


def static_dir() -> Path:
    """visdom's static folder (inside the installed package, where its server looks)."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        raise RuntimeError("visdom is not installed (pip install visdom==0.2.4)")
    return Path(spec.origin).parent / "static"


def _visdom_version() -> str:
    import visdom  # deferred: --help and --setup's messages work before visdom is importable

    return visdom.__version__


def assets_installed(static: Path | None = None) -> bool:
    """True when every asset is present and version.built matches the installed visdom (no download attempted)."""
    static = static or static_dir()
    built = static / "version.built"
    if not built.is_file() or built.read_text().strip() != _visdom_version():
        return False
    return all((static / dest).is_file() for _, _, dest in ASSETS)


def _npm_pack(spec: str, workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Node.js/npm (apt-get install -y npm) to fetch visdom's assets")
    result = subprocess.run([npm, "pack", spec, "--silent"], cwd=workdir, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"npm pack {spec} failed: {result.stderr.strip().splitlines()[-1:]}")
    name = result.stdout.strip().splitlines()[-1]
    return workdir / name


def install_assets(static: Path | None = None, log=print) -> Path:
    """Fetch every asset with `npm pack`, copy it into `static`, write version.built. Returns `static`."""
    static = static or static_dir()
    by_package: dict[str, list[tuple[str, str]]] = {}
    for spec, member, dest in ASSETS:
        by_package.setdefault(spec, []).append((member, dest))
    with tempfile.TemporaryDirectory(prefix="visdom-npm-") as tmp:
        for i, (spec, files) in enumerate(by_package.items(), 1):
            log(f"[{i}/{len(by_package)}] npm pack {spec}")
            tarball = _npm_pack(spec, Path(tmp))
            with tarfile.open(tarball) as tar:
                for member, dest in files:
                    try:
                        # npm tarballs hold a single top folder, "package/" for almost every package
                        name = next(n for n in tar.getnames() if n.split("/", 1)[-1] == member)
                        data = tar.extractfile(name).read()
                    except (StopIteration, KeyError, AttributeError):
                        raise RuntimeError(f"{spec}: {member} not found in {tarball.name}") from None
                    target = static / dest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
    (static / "version.built").write_text(_visdom_version())
    log(f"visdom assets installed in {static}")
    return static


def serve(port: int = 8097, env_path: str | None = None, extra: list[str] | None = None) -> None:
    """Start visdom's server on 127.0.0.1:`port` (blocks), skipping its CDN download step."""
    from visdom.server import run_server  # deferred, as visdom above

    argv = ["visdom.server", "-port", str(port), "-bind_local"]
    if env_path:
        Path(env_path).mkdir(parents=True, exist_ok=True)
        argv += ["-env_path", str(env_path)]
    sys.argv = argv + list(extra or [])  # run_server.main reads its flags from sys.argv
    run_server.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m Utils.tools.visdom_server", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="install the page's assets from npm, then exit")
    parser.add_argument("--port", type=int, default=8097, help="port the page and the runs' plots use")
    parser.add_argument("--env_path", default=None, help="where environments are saved (None: ~/.visdom)")
    args = parser.parse_args(argv)
    try:
        if args.setup:
            install_assets()
            return 0
        if not assets_installed():
            print("warning: visdom's page assets are missing (the REST API works, the page stays blank); "
                  "run `python -m Utils.tools.visdom_server --setup` once", file=sys.stderr)
        print(f"visdom server on http://127.0.0.1:{args.port}", flush=True)
        serve(args.port, args.env_path)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
