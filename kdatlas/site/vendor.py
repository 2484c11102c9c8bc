"""Local copies of the two browser libraries the site needs: KaTeX (equations) and Mermaid.

Material for MkDocs loads Mermaid from a CDN and arithmatex expects MathJax or KaTeX
from one; the site must work offline and on an intranet mirror, so both are taken
from the npm registry once with ``npm pack`` (the ordinary client, whatever registry
it is configured for), checked against the pinned integrity hash, and cached under
``.cache/vendor/`` (git-ignored). Run ``python -m kdatlas.site.vendor`` to fetch them
ahead of an offline build.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CACHE_DIR = Path(".cache") / "vendor"


@dataclass(frozen=True)
class VendorPackage:
    """An npm package version and the files of it the site serves."""

    name: str
    version: str
    integrity: str  # npm's "sha512-<base64>" of the tarball
    members: tuple[str, ...]  # paths inside the tarball's "package/dist/" (a trailing / = folder)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


# Mermaid 11 is the major version Material 9 is written against (it injects its theme CSS).
PACKAGES = (
    VendorPackage(
        name="katex",
        version="0.19.1",
        integrity="sha512-jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA==",
        members=("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts/"),
    ),
    VendorPackage(
        name="mermaid",
        version="11.12.3",
        integrity="sha512-wN5ZSgJQIC+CHJut9xaKWsknLxaFBwCPwPkGTSUYrTiHORWvpT8RxGk849HPnpUAQ+/9BPRqYb80jTpearrHzQ==",
        members=("mermaid.min.js",),
    ),
)


class VendorFetchError(RuntimeError):
    """The libraries are not cached and could not be fetched from the npm registry."""


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def _stamp(package: VendorPackage) -> str:
    """What the cached copy was made from: a change of version or of files refetches it."""
    return f"{package.integrity} {' '.join(package.members)}"


def package_dir(root: Path, package: VendorPackage) -> Path:
    return root / CACHE_DIR / f"{package.name}-{package.version}"


def _npm_pack(package: VendorPackage, workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise VendorFetchError(
            f"npm is not installed, so {package.spec} cannot be fetched. Install Node.js/npm, "
            f"or run `python -m kdatlas.site.vendor` once on a machine that has it and copy "
            f"{CACHE_DIR}/ over."
        )
    result = subprocess.run(
        [npm, "pack", package.spec, "--silent", "--pack-destination", str(workdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    tarballs = sorted(workdir.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        raise VendorFetchError(
            f"could not fetch {package.spec} from the npm registry (offline?). The site serves "
            f"KaTeX and Mermaid itself and needs them once; connect and rerun, or run "
            f"`python -m kdatlas.site.vendor` where the registry is reachable and copy "
            f"{CACHE_DIR}/ over.\nnpm said: {result.stderr.strip()[-800:]}"
        )
    return tarballs[0]


def _wanted(member: str, package: VendorPackage) -> str | None:
    """The path under dist/ of a tarball member the site serves, else None."""
    path = PurePosixPath(member)
    if path.parts[:2] != ("package", "dist") or ".." in path.parts:
        return None
    relative = "/".join(path.parts[2:])
    for wanted in package.members:
        if relative == wanted or (wanted.endswith("/") and relative.startswith(wanted)):
            return relative
    return None


def _extract(tarball: Path, package: VendorPackage, target: Path) -> None:
    data = tarball.read_bytes()
    if _integrity(data) != package.integrity:
        raise VendorFetchError(f"{package.spec}: the tarball's hash is not the pinned one")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive.getmembers():
                relative = _wanted(member.name, package)
                if relative is None or not member.isfile():
                    continue
                out = staging / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                out.write_bytes(source.read())
        (staging / "INTEGRITY").write_text(_stamp(package) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a half-extracted copy is never used
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure(root: Path) -> dict[str, Path]:
    """Fetch what is missing; return {site path under assets/vendor/: cached file}."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        target = package_dir(root, package)
        stamp = target / "INTEGRITY"
        if not stamp.exists() or stamp.read_text(encoding="utf-8").strip() != _stamp(package):
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as workdir:
                _extract(_npm_pack(package, Path(workdir)), package, target)
        for path in sorted(target.rglob("*")):
            if path.is_file() and path.name != "INTEGRITY":
                site_path = f"assets/vendor/{package.name}/{path.relative_to(target).as_posix()}"
                files[site_path] = path
    return files


def main() -> int:
    root = Path.cwd()
    try:
        files = ensure(root)
    except VendorFetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(files)} files cached under {CACHE_DIR}/: " + ", ".join(p.spec for p in PACKAGES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
