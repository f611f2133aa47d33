"""What `download` says about a source that has no fetcher: where to get it, on what terms, and
where its files must go, so the user need not open the manifest (or the layout code) to find out."""

from __future__ import annotations

from pathlib import Path

from unimed_data.layouts import annotation_files

_ACCESS = {
    "open": "open download",
    "credentialed": "needs a credentialed account (e.g. PhysioNet) and its data use agreement",
    "request": "access on request, under the holder's agreement",
}


def no_fetcher_guide(manifest, dest: Path) -> str:
    """Homepage, access terms, licence and the expected layout of `manifest`'s files under `dest`."""
    lines = [
        "no automatic download; fetch it by hand:",
        f"  homepage: {manifest.homepage or 'none recorded in the manifest'}",
        f"  access:   {_ACCESS[manifest.access]}",
        f"  licence:  {manifest.license}",
        f"Place its files in {dest}:",
        *(f"  {line}" for line in expected_layout(manifest, dest)),
        f"then rerun this command to check them, or point a build's `root:` at {dest.parent}.",
    ]
    return "\n".join(lines)


def expected_layout(manifest, dest: Path) -> list[str]:
    """One line per thing the manifest's layout reads."""
    layout = manifest.layout
    if layout.type == "folder":
        kinds = " ".join(layout.extensions)
        return [f"{(dest / layout.path).as_posix()}/<class>/<image>  (one folder per class; {kinds})"]
    lines = [f"{path}  (annotations)" for path in annotation_files(manifest, dest)]
    image_root = getattr(layout, "image_root", None)
    if image_root is not None:
        lines.append(f"{dest / image_root}  (the images, at the paths the annotations give)")
    return lines


def in_place(manifest, dest: Path) -> bool:
    """Whether every file the layout reads is there (a folder layout: its folder is not empty)."""
    if not dest.is_dir() or not any(not p.name.startswith(".") for p in dest.iterdir()):
        return False
    return all(path.exists() for path in annotation_files(manifest, dest))
