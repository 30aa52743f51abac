"""The model menu: for each catalog model, how every quantization would run on this machine (fit, speed, size)
and which one to get. Real file sizes come from the Hub's listings when there are any, else estimates.
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
    SpeedPrediction,
    SpeedRecord,
    assess_fit,
    effective_label,
    estimate_memory,
    offloaded_tokens_per_second,
    predict_speed,
    quant_rank,
    recommend_quant,
    speed_key,
)
from app.core.models.hardware import HardwareInfo
from app.core.models.hub import RepoListing
from app.core.models.inventory import installed_path
from app.core.units import human_bytes


@dataclass(frozen=True)
class MenuOption:
    files: ModelFiles
    memory: MemoryEstimate
    fit: FitAssessment
    label: FitLabel  # the fit, downgraded to "tight" when it would crawl
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
    def reason(self) -> str:
        if self.label is not self.fit.label and self.speed.tokens_per_second is not None:
            # describe() carries its own "~" for an estimate: no "about" before it ("about ~1.5 tokens/s").
            return f"fits in memory, but {self.speed.describe()} is slow"
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
                label=effective_label(fit, speed),
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
    """The whole menu for this machine, in catalog order. Call again when a model is loaded (pass what it
    holds as ``reclaimable``) or the context size changes: the labels follow."""
    listings = listings or {}
    return [
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
