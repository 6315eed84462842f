"""Stock Debian kernels for the lab, fetched from the distribution's packages into a cache.

Nothing is installed into the host: a private apt configuration (its own sources list, state and
cache folders, signed by the Debian archive keyring) downloads the image, module and header
packages of one kernel, and ``dpkg -x`` unpacks them under ``<cache>/kernels/<release>/root``.
The first run needs the Debian mirror (~150 MB per kernel); later runs use the cache only.

Kernels are named by a short label; the exact package is resolved from the suite's
``linux-image-amd64`` meta package the first time and then remembered in the cache:

  5.10  bullseye(-security)   the 5.2-5.10 era: kernel_fpu_begin real, restore inline, TIF bit 14
  6.1   bookworm(-security)   the host's generic headers are the same 6.1 release
  6.12  trixie
  7     sid                   the newest kernel Debian ships (6.18+ inline switch_fpu, TIF bit 19)
"""
from __future__ import annotations

import fcntl
import json
import lzma
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("FPUTRACE_VMLAB_CACHE", "/var/cache/fputrace-vmlab"))
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
APT_LISTS_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class KernelSpec:
    label: str
    suites: tuple[str, ...]   # first suite that has the meta package wins
    note: str


KERNELS: dict[str, KernelSpec] = {
    "5.10": KernelSpec("5.10", ("bullseye-security", "bullseye"), "Debian 11 bullseye"),
    "6.1": KernelSpec("6.1", ("bookworm-security", "bookworm"), "Debian 12 bookworm"),
    "6.12": KernelSpec("6.12", ("trixie",), "Debian 13 trixie"),
    "7": KernelSpec("7", ("sid",), "Debian sid (newest)"),
}
ALIASES = {"7.x": "7", "sid": "7", "bullseye": "5.10", "bookworm": "6.1", "trixie": "6.12"}


@dataclass(frozen=True)
class Kernel:
    """One unpacked kernel: everything the harness and the guest need."""
    label: str
    release: str          # uname -r inside the guest, e.g. 6.1.0-56-amd64
    package_version: str  # Debian version of the image package, e.g. 6.1.192-2
    root: str             # dpkg -x tree
    vmlinux: str          # uncompressed ELF (boots via the PVH entry, no in-guest decompression)
    modules_dir: str      # <root>/lib/modules/<release>, with modules.dep; bind-mounted in the guest
    headers_dir: str      # <root>/usr/src/linux-headers-<release> (the "build" tree for bcc)
    headers_common_dir: str

    @property
    def major_minor(self) -> tuple[int, int]:
        m = re.match(r"(\d+)\.(\d+)", self.release)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class FetchError(RuntimeError):
    """The kernel could not be fetched or unpacked; the message says which step and why."""


def _mirrors() -> tuple[str, str]:
    """The Debian mirror the host already uses (deb822 or one-line sources), else deb.debian.org."""
    main, security = DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR
    srcdir = Path("/etc/apt/sources.list.d")
    texts = [p.read_text() for p in sorted(srcdir.glob("*.sources"))] if srcdir.is_dir() else []
    for text in texts:
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if not uris or not suites or re.search(r"^Enabled:\s*no", stanza, re.M):
                continue
            if "-security" in suites.group(1):
                security = uris.group(1).rstrip("/")
            elif uris.group(1).rstrip("/").endswith("/debian"):
                main = uris.group(1).rstrip("/")
    return main, security


def registry_unreachable(timeout_s: float = 15) -> str:
    """'' when the Debian mirror answers (then a failed kernel download is a failure, not a
    reason to skip); else why it does not."""
    import urllib.error
    import urllib.request
    url = f"{_mirrors()[0]}/dists/bookworm/InRelease"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return "" if r.status == 200 else f"{url}: HTTP {r.status}"
    except (urllib.error.URLError, OSError) as err:
        return f"{url}: {err}"


class PrivateApt:
    """apt-get/apt-cache with their own sources and state: the host's apt setup is not touched."""

    SUITES = ("bullseye", "bookworm", "bookworm-backports", "trixie", "sid")
    SECURITY_SUITES = ("bullseye-security", "bookworm-security")

    def __init__(self, base: Path):
        self.base = base
        self.sources = base / "etc" / "sources.list"
        self.state = base / "state"
        self.cache = base / "cache"

    def _options(self) -> list[str]:
        return ["-o", f"Dir::Etc::sourcelist={self.sources}", "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State={self.state}", "-o", f"Dir::Cache={self.cache}",
                "-o", "Dir::Etc::preferencesparts=-", "-o", "APT::Get::List-Cleanup=0",
                "-o", "Acquire::Retries=3", "-q"]

    def setup(self) -> None:
        main, security = _mirrors()
        lines = [f"deb [signed-by={KEYRING}] {main} {s} main" for s in self.SUITES]
        lines += [f"deb [signed-by={KEYRING}] {security} {s} main" for s in self.SECURITY_SUITES]
        for d in (self.sources.parent, self.state / "lists" / "partial",
                  self.cache / "archives" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        if not self.sources.exists() or self.sources.read_text() != text:
            self.sources.write_text(text)
            (self.state / "updated").unlink(missing_ok=True)

    def update(self, force: bool = False) -> None:
        self.setup()
        stamp = self.state / "updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < APT_LISTS_MAX_AGE_S:
            return
        res = subprocess.run(["apt-get", *self._options(), "update"], capture_output=True, text=True)
        if res.returncode != 0:
            raise FetchError(f"apt-get update (private lists in {self.state}) failed: "
                             f"{res.stderr.strip().splitlines()[-1:] or res.returncode}")
        stamp.touch()

    def cache_query(self, *args: str) -> str:
        res = subprocess.run(["apt-cache", *self._options(), *args], capture_output=True, text=True)
        if res.returncode != 0:
            raise FetchError(f"apt-cache {' '.join(args)}: {res.stderr.strip()[-300:]}")
        return res.stdout

    def show(self, package: str) -> dict[str, str]:
        """Fields of the first (highest) version of ``package`` ({} if unknown)."""
        try:
            text = self.cache_query("show", package)
        except FetchError:
            return {}
        stanza = text.split("\n\n", 1)[0]
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, val = line.split(":", 1)
                fields[key] = val.strip()
        return fields

    def download(self, packages: list[str], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["apt-get", *self._options(), "download", *packages], cwd=dest,
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise FetchError(f"apt-get download {' '.join(packages)} failed: {res.stderr.strip()[-400:]}")


def _dep_names(depends: str) -> list[str]:
    """First alternative of each dependency group, without version constraints."""
    names = []
    for group in filter(None, (g.strip() for g in depends.split(","))):
        first = group.split("|", 1)[0].strip()
        names.append(re.split(r"[\s(:]", first, 1)[0])
    return names


def resolve_image_package(apt: PrivateApt, spec: KernelSpec) -> str:
    """linux-image-<release> that the suite's linux-image-amd64 meta package points at."""
    madison = apt.cache_query("madison", "linux-image-amd64")
    for suite in spec.suites:
        for line in madison.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and re.search(rf"\s{re.escape(suite)}/main\b", parts[2]):
                fields = apt.show(f"linux-image-amd64={parts[1]}")
                for dep in _dep_names(fields.get("Depends", "")):
                    if re.fullmatch(r"linux-image-.*-amd64", dep):
                        return dep
    raise FetchError(f"no linux-image-amd64 in suite(s) {', '.join(spec.suites)} of the private apt lists")


def package_closure(apt: PrivateApt, release_tag: str, roots: list[str]) -> list[str]:
    """The roots plus their dependencies that belong to this kernel build (name contains the
    release tag, e.g. ``6.12.117+deb13``, or is the kbuild package)."""
    todo, seen = list(roots), []
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        fields = apt.show(pkg)
        if not fields:
            if pkg in roots:
                raise FetchError(f"package {pkg} not found in the private apt lists")
            continue
        seen.append(pkg)
        for dep in _dep_names(fields.get("Depends", "")):
            if dep.startswith("linux-") and (release_tag in dep or dep.startswith("linux-kbuild-")) \
                    and not dep.endswith("-unsigned"):
                todo.append(dep)
    return seen


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _elf_complete(elf: bytes) -> bool:
    """The section header table (at the end of a vmlinux) lies inside the data."""
    if elf[:4] != b"\x7fELF" or len(elf) < 64:
        return False
    shoff = int.from_bytes(elf[40:48], "little")
    shentsize, shnum = int.from_bytes(elf[58:60], "little"), int.from_bytes(elf[60:62], "little")
    return shoff + shentsize * shnum <= len(elf)


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Unpack the compressed payload of a bzImage (xz up to 6.1, zstd later) into the ELF vmlinux
    QEMU boots through PVH: saves the in-guest decompression (~5 s under TCG)."""
    data = bzimage.read_bytes()
    xz, zst = data.find(b"\xfd7zXZ\x00"), data.find(b"\x28\xb5\x2f\xfd")
    if xz >= 0 and (zst < 0 or xz < zst):
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[xz:])
    elif zst >= 0:
        # zstd stops with an error at the bzImage's trailing size field; the frame itself is whole
        res = subprocess.run(["zstd", "-d", "-c"], input=data[zst:], capture_output=True)
        elf = res.stdout
    else:
        raise FetchError(f"{bzimage}: neither an xz nor a zstd payload")
    if not _elf_complete(elf):
        raise FetchError(f"{bzimage}: payload did not decompress to a whole ELF vmlinux")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.rename(out)


def _unpack(debs: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        res = subprocess.run(["dpkg", "-x", str(deb), str(root)], capture_output=True, text=True)
        if res.returncode != 0:
            raise FetchError(f"dpkg -x {deb.name}: {res.stderr.strip()[-300:]}")


def _finish_tree(root: Path, release: str) -> tuple[Path, Path, Path]:
    """Make the unpacked tree usable at a foreign path: modules.dep, and build/source links that
    point into the cache instead of /usr/src of the host."""
    # usr-merged packages (trixie+) put modules under usr/lib; depmod -b looks in <base>/lib
    if not (root / "lib").exists() and (root / "usr" / "lib").is_dir():
        (root / "lib").symlink_to("usr/lib")
    mods = root / "lib" / "modules" / release
    if not (mods / "kernel").is_dir():
        raise FetchError(f"{mods}/kernel missing after unpacking")
    res = subprocess.run(["depmod", "-b", str(root), release], capture_output=True, text=True)
    if res.returncode != 0:
        raise FetchError(f"depmod -b {root} {release}: {res.stderr.strip()[-300:]}")
    headers = root / "usr" / "src" / f"linux-headers-{release}"
    common = root / "usr" / "src" / f"linux-headers-{release.rsplit('-', 1)[0]}-common"
    if not headers.is_dir() or not common.is_dir():
        raise FetchError(f"headers missing after unpacking: {headers} / {common}")
    for name, target in (("build", headers), ("source", common)):
        link = mods / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    # the arch tree's Makefile names the common tree by its absolute /usr/src path
    mk = headers / "Makefile"
    if mk.exists():
        mk.write_text(mk.read_text().replace(f"/usr/src/{common.name}", str(common)))
    return mods, headers, common


def _release_tag(release: str) -> str:
    """6.12.117+deb13-amd64 -> 6.12.117+deb13 ; 6.1.0-56-amd64 -> 6.1.0-56"""
    return release.rsplit("-", 1)[0]


def fetch(label: str, cache_dir: Path = CACHE_DIR, log=print) -> Kernel:
    """Return the unpacked kernel for ``label``, fetching it on first use (idempotent, locked)."""
    label = ALIASES.get(label, label)
    if label not in KERNELS:
        raise FetchError(f"unknown kernel {label!r}; known: {', '.join(KERNELS)}")
    spec = KERNELS[label]
    label_file = cache_dir / "labels" / f"{label}.json"
    with _locked(cache_dir / "fetch.lock"):
        if label_file.exists():
            k = Kernel(**json.loads(label_file.read_text()))
            if Path(k.vmlinux).exists() and Path(k.modules_dir, "modules.dep").exists():
                return k
        apt = PrivateApt(cache_dir / "apt")
        apt.update()
        image_pkg = resolve_image_package(apt, spec)
        release = image_pkg.removeprefix("linux-image-")
        tag = _release_tag(release)
        pkgs = package_closure(apt, tag, [image_pkg, f"linux-headers-{release}"])
        kdir = cache_dir / "kernels" / release
        debs, root = kdir / "debs", kdir / "root"
        log(f"[vmlab] fetching kernel {label} = {release}: {' '.join(sorted(pkgs))}")
        t0 = time.monotonic()
        shutil.rmtree(kdir, ignore_errors=True)
        apt.download(pkgs, debs)
        _unpack(debs, root)
        mods, headers, common = _finish_tree(root, release)
        # bookworm/trixie: /boot/vmlinuz-<release>; sid (7.x) ships it beside the modules
        bz = next((p for p in (root / "boot" / f"vmlinuz-{release}", mods / "vmlinuz") if p.exists()),
                  None)
        if bz is None:
            raise FetchError(f"no vmlinuz in {root}/boot nor {mods}")
        vmlinux = kdir / "vmlinux"
        extract_vmlinux(bz, vmlinux)
        shutil.rmtree(debs)   # the unpacked tree is what we keep
        k = Kernel(label=label, release=release, package_version=apt.show(image_pkg).get("Version", "?"),
                   root=str(root), vmlinux=str(vmlinux), modules_dir=str(mods), headers_dir=str(headers),
                   headers_common_dir=str(common))
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text(json.dumps(asdict(k), indent=1))
        log(f"[vmlab] kernel {release} ready in {time.monotonic() - t0:.0f}s under {kdir}")
        return k


if __name__ == "__main__":
    import sys
    for lab in sys.argv[1:] or list(KERNELS):
        print(json.dumps(asdict(fetch(lab)), indent=1))
