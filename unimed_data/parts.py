"""Which datasets of a build are in place: a part whose folder or annotation files are absent is
named once, with what to download and where it goes, so a corpus of many sources (a recipe such as
UniMed's thirteen parts) can be built from the ones a user has while the rest are fetched."""

from __future__ import annotations

from pathlib import Path

from unimed_data.dataset_folders import dataset_root
from unimed_data.download.guide import expected_layout
from unimed_data.layouts import annotation_files
from unimed_data.layouts.unimed_retina import skipped_files


def missing_files(manifest, raw_root: Path) -> list[Path]:
    """The dataset folder when it is absent, else the annotation files its layout reads that are absent."""
    folder = dataset_root(manifest, raw_root)
    if not folder.is_dir():
        return [folder]
    return [path for path in annotation_files(manifest, folder) if not path.exists()]


def what_to_get(manifest, raw_root: Path, missing: list[Path]) -> str:
    """One paragraph: what is absent, then the manifest's own download instructions or, lacking
    them, its homepage and the files its layout expects."""
    folder = dataset_root(manifest, raw_root)
    if missing == [folder]:
        absent = f"folder {folder} not found"
    else:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        absent = f"annotation file(s) not found: {', '.join(str(path) for path in missing[:3])}{more}"
    manual = [entry for entry in manifest.download if entry.fetcher == "manual"]
    if manual:
        how = " ".join(entry.instructions.replace("<raw>", str(raw_root)) for entry in manual)
    elif manifest.download:
        how = f"`unimed-data download {manifest.name} --root {raw_root}` fetches it"
    else:
        layout = ", ".join(expected_layout(manifest, folder))
        how = f"get it from {manifest.homepage or 'its source'} and place: {layout}"
    return f"{absent}; {how}"


def left_unread(manifest, raw_root: Path) -> list[str]:
    """Annotation files present in the dataset's folder that its layout leaves out on purpose
    (UniMed's retinal recipe skips some per-dataset files), so a user sees why they are absent."""
    if manifest.layout.type != "unimed_retina":
        return []
    return skipped_files(manifest.layout, dataset_root(manifest, raw_root))
