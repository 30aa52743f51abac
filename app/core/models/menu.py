"""The model menu: for each catalog model, how every quantization would run on this machine (fit in memory,
speed, size) and which one to get, the models ordered by what suits this machine. Real file sizes come from
the Hub's listings when there are any, else estimates.

``top_recommendation(rows)`` (or ``recommended_for_this_machine()``, which builds the menu itself) is "the model
the menu recommends for this machine": the first recommended row, with its quantization and download target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.models.catalog import CatalogEntry, ModelFiles, estimated_files, load_catalog
from app.core.models.fit import (
    QUALITY_FLOOR,
    FitAssessment,
    FitLabel,
    MemoryBudget,
    MemoryEstimate,
    QuantChoice,
    Recommendation,
    SpeedBasis,
    SpeedLabel,
    SpeedPrediction,
    SpeedRecord,
    assess_fit,
    estimate_memory,
    offloaded_tokens_per_second,
    predict_speed,
    quant_rank,
    recommend_quant,
    speed_key,
)
from app.core.models.hardware import HardwareInfo, probe_hardware
from app.core.models.hub import RepoListing, load_listings
from app.core.models.inventory import installed_path
from app.core.models.measured import measured_speeds
from app.core.units import human_bytes

# Said wherever the menu's speeds show: they are measured or predicted with nothing else running, and other
# programs using the CPU (a build, a browser's video, a second model) can halve them.
SPEEDS_ASSUME_IDLE = "Speeds assume an idle computer: other programs using the CPU make a model slower."


@dataclass(frozen=True)
class MenuOption:
    files: ModelFiles
    memory: MemoryEstimate
    fit: FitAssessment
    label: FitLabel  # the fit in memory, whatever the speed
    speed: SpeedPrediction
    installed: Path | None = None

    @property
    def quant(self) -> str:
        return self.files.quant

    @property
    def size_text(self) -> str:
        return ("~" if self.files.estimated else "") + human_bytes(self.files.size)

    @property
    def speed_text(self) -> str:
        """The speed column's words: a model that does not fit in memory has no speed to give (it read
        "~0.0 tokens/s"), and a prediction under 0.1 tokens/s is no figure worth showing."""
        if self.fit.label is FitLabel.TOO_LARGE:
            return "won't run"
        speed = self.speed.tokens_per_second
        if speed is not None and speed < 0.05:
            return "under 0.1 tokens/s"
        return self.speed.describe()

    @property
    def speed_label(self) -> SpeedLabel:
        return self.speed.label

    @property
    def reason(self) -> str:
        return self.fit.reason


@dataclass(frozen=True)
class MenuRow:
    entry: CatalogEntry
    options: tuple[MenuOption, ...]
    recommendation: Recommendation
    context_size: int
    sizes_estimated: bool

    def option(self, quant: str | None) -> MenuOption | None:
        for option in self.options:
            if quant is not None and option.quant.upper() == quant.upper():
                return option
        return None

    @property
    def recommended(self) -> MenuOption | None:
        return self.option(self.recommendation.quant)

    @property
    def headline(self) -> MenuOption | None:
        """The option the menu shows first: the recommended one, else the quality floor, else the smallest."""
        for option in (self.recommended, self.option(QUALITY_FLOOR)):
            if option is not None:
                return option
        return min(self.options, key=lambda o: o.files.size) if self.options else None

    @property
    def label(self) -> FitLabel:
        headline = self.headline
        return headline.label if headline is not None else FitLabel.UNKNOWN

    @property
    def speed_label(self) -> SpeedLabel:
        headline = self.headline
        return headline.speed_label if headline is not None else SpeedLabel.UNKNOWN

    @property
    def is_recommended(self) -> bool:
        return self.recommendation.quant is not None

    def as_dict(self) -> dict[str, Any]:
        def option_dict(option: MenuOption) -> dict[str, Any]:
            return {
                "quant": option.quant,
                "size": option.files.size,
                "size_estimated": option.files.estimated,
                "files": [f.path for f in option.files.files],
                "memory_needed": option.fit.needed,
                "fit": option.label.value,
                "fit_reason": option.reason,
                "gpu_layers": option.fit.gpu_layers,
                "tokens_per_second": option.speed.tokens_per_second,
                "speed_label": option.speed_label.value,
                "speed_basis": option.speed.basis.value,
                "installed": str(option.installed) if option.installed else None,
            }

        return {
            "id": self.entry.id,
            "name": self.entry.name,
            "repo_id": self.entry.repo_id,
            "parameters": self.entry.parameters,
            "license": self.entry.license,
            "modes": list(self.entry.modes),
            "context_size": self.context_size,
            "fit": self.label.value,
            "speed_label": self.speed_label.value,
            "recommended": self.is_recommended,
            "recommended_quant": self.recommendation.quant,
            "advice": self.recommendation.advice,
            "sizes_estimated": self.sizes_estimated,
            "options": [option_dict(option) for option in self.options],
        }


def memory_budget(hardware: HardwareInfo, reclaimable: int = 0) -> MemoryBudget:
    return MemoryBudget(
        available_ram=hardware.available_ram,
        total_ram=hardware.total_ram,
        vram_free=hardware.vram_free,
        gpu_offload=bool(hardware.gpu_offload),
        unified_memory=hardware.unified_memory,
        reclaimable=reclaimable,
    )


def menu_row(
    entry: CatalogEntry,
    hardware: HardwareInfo,
    context_size: int,
    *,
    listing: RepoListing | None = None,
    speeds: Sequence[SpeedRecord] = (),
    reclaimable: int = 0,
) -> MenuRow:
    """How every quantization of one model would run here, at this context size."""
    context = min(context_size, entry.native_context) if context_size > 0 else entry.native_context
    budget = memory_budget(hardware, reclaimable)
    files = list(listing.options) if listing is not None and listing.options else estimated_files(entry)
    options = []
    for model_files in files:
        memory = estimate_memory(model_files.size, entry.shape, context)
        fit = assess_fit(memory, entry.n_layers, budget)
        key = speed_key(model_files.first_file) if model_files.first_file else None
        if fit.gpu_layers != 0 and hardware.memory_bandwidth:
            speed = SpeedPrediction(
                offloaded_tokens_per_second(
                    model_files.size, entry.n_layers, fit.gpu_layers, hardware.memory_bandwidth
                ),
                SpeedBasis.ESTIMATED,
            )
        else:
            speed = predict_speed(model_files.size, hardware.memory_bandwidth, speeds, key)
        options.append(
            MenuOption(
                files=model_files,
                memory=memory,
                fit=fit,
                label=fit.label,
                speed=speed,
                installed=installed_path(entry.repo_id, model_files),
            )
        )
    options.sort(key=lambda o: (quant_rank(o.quant), o.files.size))
    recommendation = recommend_quant([QuantChoice(o.quant, o.fit, o.speed) for o in options])
    return MenuRow(
        entry=entry,
        options=tuple(options),
        recommendation=recommendation,
        context_size=context,
        sizes_estimated=listing is None or not listing.options,
    )


def build_menu(
    hardware: HardwareInfo,
    context_size: int,
    *,
    entries: Sequence[CatalogEntry] | None = None,
    listings: dict[str, RepoListing] | None = None,
    speeds: Sequence[SpeedRecord] = (),
    reclaimable: int = 0,
) -> list[MenuRow]:
    """The whole menu for this machine, ordered by ``suitability``. Call again when a model is loaded (pass
    what it holds as ``reclaimable``) or the context size changes: the labels and the order follow."""
    listings = listings or {}
    rows = [
        menu_row(
            entry,
            hardware,
            context_size,
            listing=listings.get(entry.repo_id),
            speeds=speeds,
            reclaimable=reclaimable,
        )
        for entry in (entries if entries is not None else load_catalog())
    ]
    return sorted(rows, key=suitability)


_FIT_ORDER = {FitLabel.RUNS_WELL: 0, FitLabel.UNKNOWN: 1, FitLabel.TIGHT: 2, FitLabel.TOO_LARGE: 3}
_SPEED_ORDER = {SpeedLabel.FAST: 0, SpeedLabel.USABLE: 1, SpeedLabel.UNKNOWN: 2, SpeedLabel.SLOW: 3}


def suitability(row: MenuRow) -> tuple[int, int, int, int, float]:
    """The menu's order (smaller first): recommended models first, those fast here before those only usable,
    those at a good quantization before those only below Q4_K_M, and then the larger model (better answers)
    first; then the rest by how close they come (fits but slow, tight, too large), the smaller first since it
    is nearer to running well."""
    fit = _FIT_ORDER[row.label]
    speed = _SPEED_ORDER[row.speed_label]
    if row.is_recommended:
        return (0, speed, int(row.recommendation.below_quality_floor), fit, -row.entry.parameters)
    return (1, fit, speed, 0, row.entry.parameters)


@dataclass(frozen=True)
class MenuPick:
    """One model and quantization to get: what the menu recommends first."""

    row: MenuRow
    option: MenuOption

    @property
    def entry(self) -> CatalogEntry:
        return self.row.entry

    @property
    def quant(self) -> str:
        return self.option.quant

    @property
    def download_target(self) -> str:
        """What ``llamadesk models download`` and the model manager's downloader take: ``owner/repo:QUANT``."""
        return f"{self.row.entry.repo_id}:{self.option.quant}"


def top_recommendation(rows: Sequence[MenuRow]) -> MenuPick | None:
    """The first recommended model of an ordered menu (``build_menu``'s order), or None when none is."""
    for row in sorted(rows, key=suitability):
        option = row.recommended
        if option is not None:
            return MenuPick(row, option)
    return None


def recommended_for_this_machine(
    context_size: int = 4096,
    *,
    hardware: HardwareInfo | None = None,
    reclaimable: int = 0,
) -> MenuPick | None:
    """The model the menu recommends for this machine, from the cached Hub file lists (never the network) and
    the speeds measured here. Probes the hardware unless given it (the first probe on a machine measures the
    memory bandwidth, about a second): call it off the GUI thread."""
    entries = load_catalog()
    machine = hardware if hardware is not None else probe_hardware()
    listings = load_listings([entry.repo_id for entry in entries], fetch=False).listings
    rows = build_menu(
        machine,
        context_size,
        entries=entries,
        listings=listings,
        speeds=measured_speeds(),
        reclaimable=reclaimable,
    )
    return top_recommendation(rows)
